//! What a process costs, read from /proc: resident memory and CPU time.

use std::collections::HashSet;

use serde::Serialize;

/// One reading of one process.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    pub rss_bytes: u64,
    /// user + system CPU seconds since the process started.
    pub cpu_secs: f64,
}

/// Kernel clock ticks per second for /proc/<pid>/stat; 100 on every Linux this runs on
/// (USER_HZ is fixed at 100 for the proc interface on x86_64 and arm64).
const TICKS: f64 = 100.0;

pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some(Sample {
        rss_bytes: rss_kb * 1024,
        cpu_secs: (utime + stime) / TICKS,
    })
}

/// The processes that have a TCP socket listening on `port` (e.g. the shared Kafka on
/// 9092), found by matching socket inodes from /proc/net/tcp with open descriptors.
pub fn listening_on(port: u16) -> Vec<u32> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            let Some(local) = f.get(1) else { continue };
            let listening = f.get(3) == Some(&"0A");
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if listening
                && p == Some(port)
                && let Some(inode) = f.get(9)
            {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let mut pids = Vec::new();
    if inodes.is_empty() {
        return pids;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| inodes.contains(s)))
                .unwrap_or(false)
        });
        if owns {
            pids.push(pid);
        }
    }
    pids
}

/// A named group of processes watched over one measurement window.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pids: Vec<u32>,
}

/// Cost of a group over a window: CPU seconds spent in it and RSS at its end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    pub name: String,
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    /// RSS growth over the window (e.g. while connections were opened).
    pub rss_growth_bytes: i64,
}

pub struct Window {
    start: Vec<(Watched, Vec<Sample>)>,
    started: std::time::Instant,
}

impl Window {
    pub fn open(groups: &[Watched]) -> Self {
        let start = groups
            .iter()
            .map(|g| {
                let s = g
                    .pids
                    .iter()
                    .map(|p| sample(*p).unwrap_or_default())
                    .collect();
                (g.clone(), s)
            })
            .collect();
        Self {
            start,
            started: std::time::Instant::now(),
        }
    }

    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn close(&self) -> Vec<Cost> {
        self.start
            .iter()
            .map(|(g, before)| {
                let mut c = Cost {
                    name: g.name.clone(),
                    ..Default::default()
                };
                for (pid, b) in g.pids.iter().zip(before) {
                    let a = sample(*pid).unwrap_or(*b);
                    c.cpu_secs += a.cpu_secs - b.cpu_secs;
                    c.rss_bytes += a.rss_bytes;
                    c.rss_growth_bytes += a.rss_bytes as i64 - b.rss_bytes as i64;
                }
                c
            })
            .collect()
    }
}

/// Local ports of `pid`'s TCP connections to `remote_port` (e.g. its CQL connections),
/// found by matching its socket descriptors with /proc/net/tcp.
pub fn socket_ports(pid: u32, remote_port: u16) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let s = l.to_str()?;
            Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (f.get(1), f.get(2), f.get(9)) else {
                continue;
            };
            if port_of(remote) == Some(remote_port)
                && inodes.contains(*inode)
                && let Some(p) = port_of(local)
            {
                ports.push(p);
            }
        }
    }
    ports
}
