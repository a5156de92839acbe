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

/// Chooses from the flag, then `RINGDNS_BACKEND`, then the probe.
pub fn choose(flag: &str) -> Choice {
    let env = std::env::var("RINGDNS_BACKEND").unwrap_or_default();
    let (want, source) = if !flag.is_empty() {
        (flag.to_owned(), "-backend")
    } else if !env.is_empty() {
        (env, "RINGDNS_BACKEND")
    } else {
        ("auto".to_owned(), "")
    };
    match want.as_str() {
        "epoll" => Choice {
            backend: Backend::Epoll,
            reason: format!("forced by {source}"),
        },
        _ => Choice {
            backend: Backend::Epoll,
            reason: "io_uring engine not integrated in this build".to_owned(),
        },
    }
}
