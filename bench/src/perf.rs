//! Optional CPU profile of the server under test while a round runs: `perf record`
//! sampling the cpu-clock software event (hardware counters are often unavailable in
//! VMs), then a flat report of the top symbols written next to the result file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Profile {
    child: Child,
    data: PathBuf,
    report: PathBuf,
}

/// Starts sampling `pids`; None (with a warning) when perf cannot run.
pub fn start(pids: &[u32], report: PathBuf) -> Option<Profile> {
    let data = report.with_extension("perf.data");
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let child = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
        .arg(&data)
        .arg("-p")
        .arg(list.join(","))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => Some(Profile {
            child,
            data,
            report,
        }),
        Err(e) => {
            eprintln!("perf record could not start ({e}); no profile");
            None
        }
    }
}

impl Profile {
    /// Stops sampling and writes the flat report: self time by binary or library first
    /// (where the long tail of small symbols adds up), then by symbol.
    pub fn finish(mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let mut text = Vec::new();
        for (sort, limit) in [("dso", "0.5"), ("dso,symbol", "0.3")] {
            let out = Command::new("perf")
                .args(["report", "--stdio", "--no-children", "--sort", sort])
                .args(["--percent-limit", limit, "-g", "none", "-i"])
                .arg(&self.data)
                .output();
            match out {
                Ok(o) => text.extend_from_slice(&o.stdout),
                Err(e) => eprintln!("perf report failed: {e}"),
            }
        }
        if let Err(e) = std::fs::write(&self.report, &text) {
            eprintln!("writing {}: {e}", self.report.display());
        } else {
            println!("   profile: {}", self.report.display());
        }
        // FERRY_BENCH_PERF_KEEP=1 keeps the samples for `perf report -g` (callers).
        if std::env::var_os("FERRY_BENCH_PERF_KEEP").is_none() {
            let _ = std::fs::remove_file(&self.data);
        }
    }
}
