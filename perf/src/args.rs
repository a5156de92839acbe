//! Command line: dnsperf's short options with dnsperf's meaning and
//! defaults, plus a few long options of our own (`--json`, `--ramp`, ...).

use anyhow::{Context, Result, bail};

use crate::query::Edns;

pub const USAGE: &str = "\
Usage: ringdns-perf [-m udp|tcp] [-s server] [-p port] [-f inet|inet6] [-d datafile]
                    [-c clients] [-T threads] [-n maxruns] [-l timelimit] [-t timeout]
                    [-q outstanding] [-Q max_qps] [-b bufsize_kb] [-e] [-D]
                    [--json FILE|-] [--label NAME] [--batch N] [--poll auto|always|never] [--uring auto|on|off]
                    [--ramp START:STEP:MAX [--step-time S] [--max-loss PCT]]
       ringdns-perf compare [--threshold PCT] [--gate fig,fig] A.json B.json
       ringdns-perf median RUN.json... > MEDIAN.json
       ringdns-perf plot OUT.svg RUN.json...
  -m transport: udp (default) or tcp (pipelined, one connection per client)
  -s server (default 127.0.0.1)          -p port (default 53)
  -d query file, `name type` per line, `;` comments (default: stdin)
  -c clients = source sockets (default 1)   -T threads (default 1)
  -n run through the input at most N times  -l run for at most N seconds
     (neither: run through the input once, as dnsperf)
  -t timeout in seconds before a query counts as lost (default 5)
  -q queries in flight, total over threads (default 100)
  -Q fixed rate in queries/s; latency counted from the schedule
  -e EDNS0 (4096)   -D DNSSEC OK (implies -e)   -b socket buffers in KiB
  --json FILE   write the JSON summary to FILE (`-`: stdout instead of text)
  --uring auto|on|off   UDP through io_uring (auto: where the kernel allows it)
  --poll auto|always|never  with -Q, busy-poll short waits (auto: when each
     thread has a core, pausing while preempted often)
  --ramp START:STEP:MAX  step the -Q rate, each step --step-time s (default 5),
     and report the highest rate whose loss stays under --max-loss % (default 0.1)
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// `--uring auto|on|off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    /// Where the kernel allows it.
    Auto,
    /// Always (fails where the kernel refuses io_uring).
    On,
    /// Never: sendmmsg/recvmmsg.
    Off,
}

/// How `-Q` waits between sends (see the README's "Rate modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Busy-poll when each thread has a core, pause under frequent preemption.
    Auto,
    /// Always busy-poll short waits.
    Always,
    /// Always sleep.
    Never,
}

#[derive(Clone, Copy, Debug)]
pub struct Ramp {
    pub start: f64,
    pub step: f64,
    pub max: f64,
    pub step_secs: f64,
    pub max_loss_pct: f64,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub server: String,
    pub port: u16,
    pub family: Family,
    pub datafile: Option<String>,
    pub clients: usize,
    pub threads: usize,
    pub maxruns: Option<u64>,
    pub limit: Option<f64>,
    pub timeout: f64,
    pub outstanding: usize,
    pub max_qps: Option<f64>,
    pub bufsize_kb: Option<usize>,
    pub edns: Edns,
    pub json: Option<String>,
    pub label: Option<String>,
    pub batch: usize,
    pub poll: Poll,
    /// UDP through io_uring (`--uring`).
    pub uring: Toggle,
    pub ramp: Option<Ramp>,
    /// The command line, for the report header.
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: Mode::Udp,
            server: "127.0.0.1".into(),
            port: 53,
            family: Family::Any,
            datafile: None,
            clients: 1,
            threads: 1,
            maxruns: None,
            limit: None,
            timeout: 5.0,
            outstanding: 100,
            max_qps: None,
            bufsize_kb: None,
            edns: Edns {
                enabled: false,
                dnssec_ok: false,
                udp_size: 4096,
            },
            json: None,
            label: None,
            batch: 64,
            poll: Poll::Auto,
            uring: Toggle::Auto,
            ramp: None,
            command: String::new(),
        }
    }
}

fn num<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T> {
    v.parse()
        .ok()
        .with_context(|| format!("invalid value for {opt}: {v}"))
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            command: format!("ringdns-perf {}", args.join(" ")),
            ..Self::default()
        };
        let mut ramp: Option<(f64, f64, f64)> = None;
        let (mut step_secs, mut max_loss) = (5.0, 0.1);
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            i += 1;
            // Flags without a value.
            match a {
                "-e" => {
                    o.edns.enabled = true;
                    continue;
                }
                "-D" => {
                    o.edns.enabled = true;
                    o.edns.dnssec_ok = true;
                    continue;
                }
                "-h" | "--help" | "-H" => bail!("{USAGE}"),
                _ => {}
            }
            // Options with a value: `-s X`, `-sX` or `--long X`.
            let (opt, inline) = if a.starts_with("--") || a.len() <= 2 {
                (a, None)
            } else if a.starts_with('-') {
                (&a[..2], Some(&a[2..]))
            } else {
                bail!("unexpected argument {a}\n{USAGE}");
            };
            let val = match inline {
                Some(v) => v.to_string(),
                None => {
                    let v = args
                        .get(i)
                        .with_context(|| format!("{opt} needs a value"))?;
                    i += 1;
                    v.clone()
                }
            };
            let v = val.as_str();
            match opt {
                "-m" => {
                    o.mode = match v {
                        "udp" => Mode::Udp,
                        "tcp" => Mode::Tcp,
                        _ => bail!("unsupported mode {v} (udp, tcp)"),
                    }
                }
                "-s" => o.server = val,
                "-p" => o.port = num(opt, v)?,
                "-f" => {
                    o.family = match v {
                        "inet" => Family::V4,
                        "inet6" => Family::V6,
                        "any" => Family::Any,
                        _ => bail!("invalid family {v}"),
                    }
                }
                "-d" => o.datafile = Some(val),
                "-c" => o.clients = num(opt, v)?,
                "-T" => o.threads = num(opt, v)?,
                "-n" => o.maxruns = Some(num(opt, v)?),
                "-l" => o.limit = Some(num(opt, v)?),
                "-t" => o.timeout = num(opt, v)?,
                "-q" => o.outstanding = num(opt, v)?,
                "-Q" => o.max_qps = Some(num(opt, v)?),
                "-b" => o.bufsize_kb = Some(num(opt, v)?),
                // Accepted for compatibility, no effect here.
                "-S" | "-a" | "-x" | "-O" | "-E" | "-y" => {
                    eprintln!("[Warning] option {opt} is accepted but ignored");
                }
                "--json" => o.json = Some(val),
                "--label" => o.label = Some(val),
                "--batch" => o.batch = num(opt, v)?,
                "--uring" => {
                    o.uring = match v {
                        "auto" => Toggle::Auto,
                        "on" => Toggle::On,
                        "off" => Toggle::Off,
                        _ => bail!("--uring wants auto, on or off"),
                    };
                }
                "--poll" => {
                    o.poll = match v {
                        "auto" => Poll::Auto,
                        "always" => Poll::Always,
                        "never" => Poll::Never,
                        _ => bail!("--poll wants auto, always or never"),
                    }
                }
                "--ramp" => {
                    let p: Vec<f64> = v.split(':').map(|x| num(opt, x)).collect::<Result<_>>()?;
                    let [s, st, m] = p[..] else {
                        bail!("--ramp wants START:STEP:MAX")
                    };
                    ramp = Some((s, st, m));
                }
                "--step-time" => step_secs = num(opt, v)?,
                "--max-loss" => max_loss = num(opt, v)?,
                _ => bail!("unknown option {opt}\n{USAGE}"),
            }
        }
        if let Some((start, step, max)) = ramp {
            if start <= 0.0 || step <= 0.0 || max < start {
                bail!("--ramp wants 0 < START <= MAX and STEP > 0");
            }
            o.ramp = Some(Ramp {
                start,
                step,
                max,
                step_secs,
                max_loss_pct: max_loss,
            });
        }
        if o.clients == 0 || o.threads == 0 || o.outstanding == 0 || o.batch == 0 {
            bail!("-c, -T, -q and --batch must be at least 1");
        }
        if o.timeout <= 0.0 || o.max_qps.is_some_and(|q| q <= 0.0) {
            bail!("-t and -Q must be positive");
        }
        // As dnsperf: no more threads than clients, and at least one query
        // in flight per thread.
        o.threads = o.threads.min(o.clients);
        o.outstanding = o.outstanding.max(o.threads);
        o.batch = o.batch.min(1024);
        Ok(o)
    }
}

impl Options {
    /// How many times the input is used: as dnsperf, once when neither
    /// `-l` nor `-n` is given; ramp steps are bounded by time instead.
    pub fn input_runs(&self) -> Option<u64> {
        if self.limit.is_none() && self.maxruns.is_none() && self.ramp.is_none() {
            Some(1)
        } else {
            self.maxruns
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Options> {
        Options::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn dnsperf_options() {
        let o =
            parse("-s 127.0.0.1 -p5353 -d q.txt -l 10 -c 16 -q 200 -T 2 -t 1 -Q 50000 -m tcp -D")
                .unwrap_or_default();
        assert_eq!(o.port, 5353);
        assert_eq!(o.datafile.as_deref(), Some("q.txt"));
        assert_eq!((o.clients, o.threads, o.outstanding), (16, 2, 200));
        assert_eq!(o.limit, Some(10.0));
        assert_eq!(o.max_qps, Some(50000.0));
        assert_eq!(o.mode, Mode::Tcp);
        assert!(o.edns.enabled && o.edns.dnssec_ok);
    }

    #[test]
    fn defaults_and_errors() {
        let o = parse("-T 4").unwrap_or_default();
        assert_eq!(
            (o.clients, o.threads, o.outstanding, o.port),
            (1, 1, 100, 53)
        );
        assert!(parse("-m doh").is_err());
        assert!(parse("-c").is_err());
        assert!(parse("-z 1").is_err());
        let r = parse("--ramp 1000:1000:5000 --max-loss 1")
            .ok()
            .and_then(|o| o.ramp);
        assert!(r.is_some_and(|r| r.max == 5000.0 && r.max_loss_pct == 1.0));
        assert!(parse("--ramp 1000:5000").is_err());
    }
}
