//! How many workers to run: the usable cores, the cgroup CPU quota and
//! `GOMAXPROCS`, as CoreDNS sizes GOMAXPROCS with automaxprocs. Also the
//! `maxprocs:` line CoreDNS prints first.

/// Worker count and the line to print.
pub fn workers() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Ok(v) = std::env::var("GOMAXPROCS") {
        if let Ok(n) = v.trim().parse::<usize>() {
            if n > 0 {
                // automaxprocs prints the env value with %d applied to a string.
                return (
                    n,
                    format!("maxprocs: Honoring GOMAXPROCS=%!d(string={v}) as set in environment"),
                );
            }
        }
    }
    match cgroup_quota() {
        Some(q) => {
            let n = (q.floor() as usize).max(1);
            if n == cpus {
                (
                    n,
                    format!("maxprocs: Leaving GOMAXPROCS={n}: determined from CPU quota"),
                )
            } else {
                (
                    n,
                    format!("maxprocs: Updating GOMAXPROCS={n}: determined from CPU quota"),
                )
            }
        }
        None => (
            cpus,
            format!("maxprocs: Leaving GOMAXPROCS={cpus}: CPU quota undefined"),
        ),
    }
}

/// CPU quota in cores from cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`.
fn cgroup_quota() -> Option<f64> {
    let self_cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in self_cg.lines() {
        // v2: "0::/path"
        if let Some(path) = line.strip_prefix("0::") {
            let f = format!("/sys/fs/cgroup{}/cpu.max", path.trim_end_matches('/'));
            let text = std::fs::read_to_string(&f)
                .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cpu.max"))
                .ok()?;
            let mut it = text.split_whitespace();
            let quota = it.next()?;
            let period: f64 = it.next()?.parse().ok()?;
            if quota == "max" || period <= 0.0 {
                return None;
            }
            return Some(quota.parse::<f64>().ok()? / period);
        }
    }
    let q: f64 = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let p: f64 = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (q > 0.0 && p > 0.0).then(|| q / p)
}
