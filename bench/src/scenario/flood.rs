//! flood: one user's latency, quiet and then while flooding connections (each kind in
//! its own client process) send valid SendMsgList at full speed, malformed frames,
//! oversized SendMsgList and SyncMsgList with huge seq lists. ferry runs with its own
//! default limits. The target: the victim's p99 under the flood within 2x its quiet p99.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::victim::{Phase, Victim};
use crate::flooder::{Kind, Report};
use crate::hist;
use crate::job::Counters;
use crate::procstat::{Cost, Watched, Window};
use crate::report::Row;
use crate::servers::{DEFAULT_LIMITS, SECRET};
use crate::systems::{Opts, Running};

/// The isolation target: flooded p99 over quiet p99.
pub const TARGET_RATIO: f64 = 2.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Requests the victim makes in each phase (quiet, flooded).
    #[arg(long, default_value_t = 400)]
    pub requests: u64,
    /// The victim's request rate (ferry's default limit is 50/s per connection).
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Kinds of flooders, one client process each.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Kind::ALL)]
    pub kinds: Vec<Kind>,
    /// Flooding connections per kind.
    #[arg(long, default_value_t = 2)]
    pub conns: usize,
    /// Seconds the flood runs before the victim is measured (past every flooder's burst).
    #[arg(long, default_value_t = 3.0)]
    pub settle_secs: f64,
}

/// The flooded row's summary: the victim's percentiles in both phases and what the
/// flooders saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Isolation {
    pub quiet_p50_ms: f64,
    pub quiet_p99_ms: f64,
    pub flooded_p50_ms: f64,
    pub flooded_p99_ms: f64,
    pub p99_ratio: f64,
    pub target_ratio: f64,
    pub quiet_server_cpu_pct: f64,
    pub flooded_server_cpu_pct: f64,
    pub flooders: Vec<Report>,
}

struct Flooder {
    child: Child,
    out: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// Starts one flooder process per kind and waits until each is flooding.
async fn start_flooders(server: &str, a: &Args) -> anyhow::Result<Vec<Flooder>> {
    let exe = std::env::current_exe()?;
    let mut v = Vec::new();
    for (i, kind) in a.kinds.iter().enumerate() {
        let mut child = Command::new(&exe)
            .arg("flooder")
            .args(["--server", server, "--kind", kind.name()])
            .args(["--conns", &a.conns.to_string()])
            // The victim binds 127.0.0.2; each flooder its own address.
            .args(["--source-ip", &format!("127.0.0.{}", 3 + i)])
            .args([
                "--user-prefix",
                &format!("flood{}", kind.name().replace('-', "")),
            ])
            .args(["--secret", SECRET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a flooder")?;
        let out = BufReader::new(child.stdout.take().context("flooder stdout")?).lines();
        v.push(Flooder { child, out });
    }
    for f in &mut v {
        let line = tokio::time::timeout(Duration::from_secs(60), f.out.next_line())
            .await
            .context("a flooder did not start flooding within 60 s")??;
        if line.as_deref() != Some("started") {
            bail!("flooder: unexpected {line:?}");
        }
    }
    Ok(v)
}

/// Closes every flooder's stdin (which stops it) and collects its report.
async fn stop_flooders(fs: Vec<Flooder>) -> anyhow::Result<Vec<Report>> {
    let mut out = Vec::new();
    for mut f in fs {
        drop(f.child.stdin.take());
        let line = tokio::time::timeout(Duration::from_secs(30), f.out.next_line())
            .await
            .context("a flooder did not report within 30 s")??
            .context("a flooder exited without a report")?;
        out.push(serde_json::from_str(&line).with_context(|| format!("flooder said {line}"))?);
        let _ = tokio::time::timeout(Duration::from_secs(10), f.child.wait()).await;
    }
    Ok(out)
}

fn phase_row(run: &Running, params: String, p: &Phase, n: u64, costs: Vec<Cost>, secs: f64) -> Row {
    let mut row = Row {
        scenario: "flood".into(),
        system: run.label.clone(),
        params,
        connections: 1,
        secs,
        counters: Counters {
            connected: 1,
            sent: n,
            acked: p.ok,
            received: p.ok,
            errors: p.errors,
            ..Default::default()
        },
        expected: n,
        delivered_per_s: p.ok as f64 / secs.max(1e-9),
        ack: hist::summary(&p.latency),
        costs,
        notes: p.samples.clone(),
        ..Default::default()
    };
    if let Some(s) = row.system_cost() {
        row.cpu_pct = 100.0 * s.cpu_secs / secs.max(1e-9);
    }
    row
}

pub async fn run(opts: &Opts, a: &Args) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for sys in opts.systems(false) {
        let run = Running::start_with_limits(&sys, opts, DEFAULT_LIMITS)?;
        let server = run.send_addr();
        let label = super::idle::short(&run.label).to_owned();
        println!("flood {label}: victim quiet, {} requests", a.requests);
        let mut victim = Victim::connect(&server, "victim", SECRET).await?;
        // Warm-up: connections, caches and the store's first reads are not measured.
        victim.measure(20, a.rate).await;

        let win = Window::open(&run.watched(None));
        let quiet = victim.measure(a.requests, a.rate).await;
        let (costs, secs) = (win.close(), win.secs());
        let mut quiet_row = phase_row(
            &run,
            format!("victim alone, {:.0} req/s closed loop", a.rate),
            &quiet,
            a.requests,
            costs,
            secs,
        );
        quiet_row.print();

        let flooders = start_flooders(&server, a).await?;
        tokio::time::sleep(Duration::from_secs_f64(a.settle_secs)).await;
        println!(
            "flood {label}: victim under the flood, {} requests",
            a.requests
        );
        let mut watched = run.watched(None);
        watched.push(Watched {
            name: "flooders".into(),
            pids: flooders.iter().filter_map(|f| f.child.id()).collect(),
        });
        let profile = run.perf.as_ref().and_then(|dir| {
            let _ = std::fs::create_dir_all(dir);
            let pids: Vec<u32> = run.procs.iter().map(|p| p.pid()).collect();
            let name: String = label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            crate::perf::start(&pids, dir.join(format!("flood-{name}.txt")))
        });
        let win = Window::open(&watched);
        let loud = victim.measure(a.requests, a.rate).await;
        let (costs, secs) = (win.close(), win.secs());
        if let Some(p) = profile {
            p.finish();
        }
        let reports = stop_flooders(flooders).await?;
        let kinds: Vec<&str> = a.kinds.iter().map(|k| k.name()).collect();
        let mut loud_row = phase_row(
            &run,
            format!(
                "victim {:.0} req/s under {}x{{{}}} flooders",
                a.rate,
                a.conns,
                kinds.join(",")
            ),
            &loud,
            a.requests,
            costs,
            secs,
        );
        loud_row.connections = 1 + (a.conns * a.kinds.len()) as u64;
        let iso = Isolation {
            quiet_p50_ms: quiet_row.ack.p50_ms,
            quiet_p99_ms: quiet_row.ack.p99_ms,
            flooded_p50_ms: loud_row.ack.p50_ms,
            flooded_p99_ms: loud_row.ack.p99_ms,
            p99_ratio: loud_row.ack.p99_ms / quiet_row.ack.p99_ms.max(1e-3),
            target_ratio: TARGET_RATIO,
            quiet_server_cpu_pct: quiet_row.cpu_pct,
            flooded_server_cpu_pct: loud_row.cpu_pct,
            flooders: reports,
        };
        loud_row.notes.insert(
            0,
            format!(
                "victim p99 {:.2} ms flooded vs {:.2} ms quiet: {:.2}x (target {TARGET_RATIO}x)",
                iso.flooded_p99_ms, iso.quiet_p99_ms, iso.p99_ratio
            ),
        );
        for r in &iso.flooders {
            loud_row.notes.push(format!(
                "flooders {}: {} conns opened {} times, {} frames, {} ok, {} refused, {} rejected, closed 1008 x{}, other closes {}, connect errors {}",
                r.kind, r.conns, r.opened, r.frames_sent, r.answered_ok, r.refused, r.rejected,
                r.closed_1008, r.closed_other, r.connect_errors
            ));
        }
        loud_row.flood = Some(iso);
        loud_row.print();
        rows.push(quiet_row);
        rows.push(loud_row);
    }
    Ok(rows)
}
