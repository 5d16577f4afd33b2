//! The systems one scenario runs against, side by side in the same run: ferry on each
//! requested backend, and the peers.

use std::path::PathBuf;

use crate::job::Target;
use crate::pool::Pool;
use crate::procstat::Watched;
use crate::servers::{self, Backend, Proc};

#[derive(Clone, Debug)]
pub enum System {
    /// ferry with this many pods (Kafka + Cassandra runs two: senders on one, recipients
    /// on the other).
    Ferry(Backend, usize),
    Centrifugo,
    Bare,
}

/// Settings every scenario shares.
#[derive(Clone, Debug)]
pub struct Opts {
    pub ferry_bin: PathBuf,
    pub centrifugo_bin: PathBuf,
    pub brokers: String,
    pub cql: String,
    pub backends: Vec<String>,
    pub peers: Vec<String>,
    pub payload: usize,
    pub workers: usize,
    pub check: bool,
    /// Directory for perf reports of ferry's rounds.
    pub perf: Option<PathBuf>,
}

impl Opts {
    /// ferry on each backend asked for, then the peers asked for (and that apply).
    pub fn systems(&self, peers_apply: bool) -> Vec<System> {
        let mut v = Vec::new();
        for b in &self.backends {
            match b.as_str() {
                "embedded" => v.push(System::Ferry(Backend::Embedded, 1)),
                "kafka" => v.push(System::Ferry(
                    Backend::kafka_fresh(&self.brokers, &self.cql),
                    2,
                )),
                // One pod on the same backend: the 1-pod side of the 1-vs-2-pods cost.
                "kafka1" => v.push(System::Ferry(
                    Backend::kafka_fresh(&self.brokers, &self.cql),
                    1,
                )),
                other => eprintln!("unknown backend {other:?} ignored"),
            }
        }
        if peers_apply {
            for p in &self.peers {
                match p.as_str() {
                    "centrifugo" => v.push(System::Centrifugo),
                    "bare" => v.push(System::Bare),
                    _ => {}
                }
            }
        }
        v
    }
}

pub struct Running {
    pub label: String,
    pub target: Target,
    pub procs: Vec<Proc>,
    /// Shared services this system depends on (Kafka, Cassandra), measured beside it.
    pub services: Vec<Watched>,
    /// Where to put perf reports of this system's rounds (ferry only).
    pub perf: Option<PathBuf>,
    /// The CQL node and the run's keyspace (ferry on Kafka + Cassandra only).
    pub cql: Option<(String, String)>,
    /// Deletes the run's topics and keyspace; after `procs` so the pods stop first.
    _fresh: Option<crate::cleanup::Fresh>,
}

impl Running {
    pub fn start(sys: &System, opts: &Opts) -> anyhow::Result<Self> {
        Self::start_with_limits(sys, opts, servers::BENCH_LIMITS)
    }

    /// Starts `sys`; ferry gets `limits` as its `[limits]` table (peers ignore it).
    pub fn start_with_limits(sys: &System, opts: &Opts, limits: &str) -> anyhow::Result<Self> {
        // A fresh topic prefix and keyspace for every start.
        Ok(match sys {
            System::Ferry(backend, pods) => {
                let backend = match backend {
                    Backend::Kafka { .. } => Backend::kafka_fresh(&opts.brokers, &opts.cql),
                    b => b.clone(),
                };
                // Armed before the pods start: a failed start cleans up too.
                let fresh = crate::cleanup::Fresh::of(&backend);
                let procs = servers::ferry(&opts.ferry_bin, &backend, *pods, limits)?;
                let mut services = Vec::new();
                if matches!(backend, Backend::Kafka { .. }) {
                    for (name, addr) in [("kafka", &opts.brokers), ("cassandra", &opts.cql)] {
                        let port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
                        if let Some(port) = port {
                            services.push(Watched {
                                name: name.into(),
                                pids: crate::procstat::listening_on(port),
                            });
                        }
                    }
                }
                Self {
                    label: format!(
                        "ferry {} ({} pod{})",
                        backend.label(),
                        pods,
                        if *pods > 1 { "s" } else { "" }
                    ),
                    target: Target::Ferry,
                    procs,
                    services,
                    perf: opts.perf.clone(),
                    cql: match &backend {
                        Backend::Kafka { cql, keyspace, .. } => {
                            Some((cql.clone(), keyspace.clone()))
                        }
                        Backend::Embedded => None,
                    },
                    _fresh: fresh,
                }
            }
            System::Centrifugo => Self {
                label: "Centrifugo 6.9.1 (memory)".into(),
                target: Target::Centrifugo,
                procs: vec![servers::centrifugo(&opts.centrifugo_bin)?],
                services: Vec::new(),
                perf: None,
                cql: None,
                _fresh: None,
            },
            System::Bare => Self {
                label: "bare WebSocket broadcast".into(),
                target: Target::Bare,
                procs: vec![servers::bare()?],
                services: Vec::new(),
                perf: None,
                cql: None,
                _fresh: None,
            },
        })
    }

    /// Where senders connect.
    pub fn send_addr(&self) -> String {
        self.procs[0].addr.clone()
    }

    /// Where recipients connect: the other pod when there are two.
    pub fn recv_addr(&self) -> String {
        self.procs[self.procs.len() - 1].addr.clone()
    }

    /// What `--counts` counts: each pod (a: senders, b: recipients) and each service.
    pub fn count_targets(&self) -> Vec<crate::counts::Target> {
        let mut v: Vec<crate::counts::Target> = self
            .procs
            .iter()
            .enumerate()
            .map(|(i, p)| crate::counts::Target {
                name: format!("pod-{}", (b'a' + i as u8) as char),
                pid: p.pid(),
                http: Some(p.addr.clone()),
            })
            .collect();
        for s in &self.services {
            for pid in &s.pids {
                v.push(crate::counts::Target {
                    name: s.name.clone(),
                    pid: *pid,
                    http: None,
                });
            }
        }
        v
    }

    pub fn pods(&self) -> usize {
        self.procs.len()
    }

    /// The process groups measured over a window: the server, the services it uses,
    /// and the load generator's workers.
    pub fn watched(&self, pool: Option<&Pool>) -> Vec<Watched> {
        let mut v = vec![Watched {
            name: "server".into(),
            pids: self.procs.iter().map(Proc::pid).collect(),
        }];
        v.extend(self.services.iter().cloned());
        if let Some(p) = pool {
            v.push(Watched {
                name: "load-gen".into(),
                pids: p.pids(),
            });
        }
        v
    }
}
