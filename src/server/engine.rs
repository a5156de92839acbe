//! Backend choice (ARCHITECTURE "Backends: probe, then choose"): io_uring where
//! the kernel allows it, the epoll backend otherwise or when forced with
//! `-backend epoll` / `RINGDNS_BACKEND=epoll`.

/// The packet engine serving UDP/TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring.
    Uring,
    /// tokio/epoll with recvmmsg/sendmmsg.
    Epoll,
}

/// The choice and why it was made.
#[derive(Debug, Clone)]
pub struct Choice {
    /// Backend.
    pub backend: Backend,
    /// Reason for the log line.
    pub reason: String,
}

impl Choice {
    /// The one INFO line naming the backend and the reason.
    pub fn describe(&self) -> String {
        let name = match self.backend {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        };
        format!("ringdns: packet engine {name} ({})", self.reason)
    }
}

/// Chooses from the flag, then `RINGDNS_BACKEND`, then the probe. `Err` when
/// io_uring was forced but the kernel refuses it.
pub fn choose(flag: &str) -> Result<Choice, String> {
    let env = std::env::var("RINGDNS_BACKEND").unwrap_or_default();
    let (want, source) = if !flag.is_empty() {
        (flag.to_owned(), "-backend")
    } else if !env.is_empty() {
        (env, "RINGDNS_BACKEND")
    } else {
        ("auto".to_owned(), "")
    };
    match want.as_str() {
        "epoll" => Ok(Choice {
            backend: Backend::Epoll,
            reason: format!("forced by {source}"),
        }),
        "uring" => match uring::probe() {
            Ok(()) => Ok(Choice {
                backend: Backend::Uring,
                reason: format!("forced by {source}"),
            }),
            Err(e) => Err(format!("{source} uring: io_uring unavailable: {e}")),
        },
        "auto" => Ok(match uring::probe() {
            Ok(()) => Choice {
                backend: Backend::Uring,
                reason: "probe ok".to_owned(),
            },
            Err(e) => Choice {
                backend: Backend::Epoll,
                reason: format!("io_uring unavailable: {e}"),
            },
        }),
        other => Err(format!(
            "invalid value {other:?} for {source}: want auto, uring or epoll"
        )),
    }
}
