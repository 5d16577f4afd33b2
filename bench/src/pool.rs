//! The coordinator's side of the worker processes: spreads clients over them, drives
//! their phases, shows progress, and merges what they report.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command as Proc};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hist;
use crate::job::{Client, Command, Counters, Event, Job, Target};

/// Most sockets one worker holds: the per-process descriptor limit here is 20k.
pub const MAX_PER_WORKER: usize = 9_000;

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

pub struct Pool {
    workers: Vec<Worker>,
    events: mpsc::Receiver<(usize, Event)>,
    last: Vec<Counters>,
    results: Vec<Option<Event>>,
    pub clients: usize,
}

/// What all workers measured between Go and Stop.
pub struct Outcome {
    pub counters: Counters,
    pub ack: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub samples: Vec<String>,
}

pub fn sum(cs: &[Counters]) -> Counters {
    let mut t = Counters::default();
    for c in cs {
        t.connected += c.connected;
        t.connect_errors += c.connect_errors;
        t.sent += c.sent;
        t.acked += c.acked;
        t.errors += c.errors;
        t.received += c.received;
        t.early += c.early;
        t.synced += c.synced;
        t.sync_errors += c.sync_errors;
    }
    t
}

pub fn bar(len: u64, label: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(label.to_owned());
    b
}

impl Pool {
    /// Starts enough workers for `clients` (each on its own source address) and hands
    /// each its share.
    pub async fn start(
        target: Target,
        clients: Vec<Client>,
        workers: usize,
        secret: &str,
        payload_bytes: usize,
        connect_concurrency: usize,
    ) -> anyhow::Result<Self> {
        let n = clients.len();
        let workers = workers.max(n.div_ceil(MAX_PER_WORKER)).max(1);
        let exe = std::env::current_exe()?;
        let (tx, events) = mpsc::channel(1024);
        let mut ws = Vec::new();
        let mut shares: Vec<Vec<Client>> = vec![Vec::new(); workers];
        for (i, c) in clients.into_iter().enumerate() {
            shares[i % workers].push(c);
        }
        for (w, share) in shares.into_iter().enumerate() {
            let job = Job {
                target,
                worker: w,
                source_ip: format!("127.0.0.{}", 2 + w),
                secret: secret.to_owned(),
                payload_bytes,
                connect_concurrency,
                clients: share,
            };
            let mut child = Proc::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let mut line = serde_json::to_vec(&job)?;
            line.push(b'\n');
            stdin.write_all(&line).await?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&l) {
                        Ok(ev) => {
                            if tx.send((w, ev)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => eprintln!("worker {w}: bad event {e}: {l}"),
                    }
                }
            });
            ws.push(Worker { child, stdin });
        }
        Ok(Self {
            last: vec![Counters::default(); workers],
            results: vec![None; workers],
            workers: ws,
            events,
            clients: n,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    async fn send(&mut self, cmd: Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&cmd)?;
        line.push(b'\n');
        for w in &mut self.workers {
            w.stdin.write_all(&line).await?;
            w.stdin.flush().await?;
        }
        Ok(())
    }

    async fn next_event(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Err(_) => Ok(false),
            Ok(None) => bail!("every worker exited"),
            Ok(Some((w, ev))) => {
                match ev {
                    Event::Progress(c) | Event::Ready(c) => self.last[w] = c,
                    r @ Event::Result { .. } => {
                        if let Event::Result { counters, .. } = &r {
                            self.last[w] = counters.clone();
                        }
                        self.results[w] = Some(r);
                    }
                }
                Ok(true)
            }
        }
    }

    pub fn counters(&self) -> Counters {
        sum(&self.last)
    }

    /// Waits until `done` holds for the summed counters, showing `pos` on a progress
    /// bar of length `len`; gives up at `limit` and returns what was reached.
    pub async fn wait_until(
        &mut self,
        label: &str,
        len: u64,
        limit: Duration,
        pos: impl Fn(&Counters) -> u64,
        done: impl Fn(&Counters) -> bool,
    ) -> anyhow::Result<(Counters, bool)> {
        let b = bar(len, label);
        let deadline = Instant::now() + limit;
        loop {
            let c = self.counters();
            b.set_position(pos(&c).min(len));
            b.set_message(format!(
                "errors {}",
                c.errors + c.connect_errors + c.sync_errors
            ));
            if done(&c) {
                b.finish();
                return Ok((c, true));
            }
            if !self.next_event(deadline).await? {
                b.abandon_with_message("time limit reached");
                return Ok((self.counters(), false));
            }
        }
    }

    pub async fn connect_all(&mut self, label: &str, limit: Duration) -> anyhow::Result<Counters> {
        let n = self.clients as u64;
        let (c, _) = self
            .wait_until(
                label,
                n,
                limit,
                |c| c.connected + c.connect_errors,
                |c| c.connected + c.connect_errors >= n,
            )
            .await?;
        Ok(c)
    }

    /// Starts the senders' schedules a moment from now, all workers on the same clock.
    pub async fn go(&mut self, rate: f64, count: u64) -> anyhow::Result<Instant> {
        let lead = Duration::from_millis(200);
        let start_ns = crate::conn::now_ns() + lead.as_nanos() as u64;
        self.send(Command::Go {
            start_ns,
            rate,
            count,
        })
        .await?;
        Ok(Instant::now() + lead)
    }

    pub async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.send(Command::Reconnect).await
    }

    /// Stops the senders and merges every worker's histograms.
    pub async fn stop(&mut self) -> anyhow::Result<Outcome> {
        self.results.iter_mut().for_each(|r| *r = None);
        self.send(Command::Stop).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.results.iter().any(Option::is_none) {
            if !self.next_event(deadline).await? {
                bail!("a worker did not report within 30 s");
            }
        }
        let mut out = Outcome {
            counters: Counters::default(),
            ack: hist::new(),
            e2e: hist::new(),
            connect: hist::new(),
            samples: Vec::new(),
        };
        let mut cs = Vec::new();
        for r in self.results.iter().flatten() {
            if let Event::Result {
                counters,
                ack,
                e2e,
                connect,
                samples,
            } = r
            {
                cs.push(counters.clone());
                hist::merge(&mut out.ack, ack);
                hist::merge(&mut out.e2e, e2e);
                hist::merge(&mut out.connect, connect);
                out.samples.extend(samples.iter().take(5).cloned());
            }
        }
        out.counters = sum(&cs);
        Ok(out)
    }

    pub async fn exit(mut self) {
        let _ = self.send(Command::Exit).await;
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(10), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.kill().await;
            }
        }
    }
}
