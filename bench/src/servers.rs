//! The systems under test, each started as its own child process on 127.0.0.1 and
//! stopped (SIGTERM, then wait) when dropped: ferry pods, Centrifugo, the bare server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const SECRET: &str = "ferry-bench-secret-0123456789abcdef";
pub const SERVICE_TOKEN: &str = "ferry-bench-service-token-0123456789";

/// One server process.
pub struct Proc {
    pub addr: String,
    child: Child,
    dir: Option<PathBuf>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Waits for a line starting with `prefix` on the child's stdout and returns the
/// address that follows; the rest of the output is drained in the background.
fn await_addr(child: &mut Child, prefix: &str) -> anyhow::Result<String> {
    let out = child.stdout.take().context("stdout")?;
    let mut out = BufReader::new(out);
    let mut line = String::new();
    while out.read_line(&mut line)? > 0 {
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned();
            std::thread::spawn(move || for _ in out.lines() {});
            return Ok(addr);
        }
        line.clear();
    }
    bail!("server exited before printing {prefix:?}")
}

fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "ferry-bench-{}-{name}-{}",
        std::process::id(),
        crate::conn::now_ns()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Where ferry's data lives: the embedded log and store, or Kafka + Cassandra under a
/// fresh topic prefix and keyspace.
#[derive(Clone, Debug)]
pub enum Backend {
    Embedded,
    Kafka {
        brokers: String,
        cql: String,
        prefix: String,
        keyspace: String,
    },
}

impl Backend {
    pub fn kafka_fresh(brokers: &str, cql: &str) -> Self {
        let run = format!(
            "{}{}",
            std::process::id(),
            crate::conn::now_ns() % 1_000_000_000
        );
        Self::Kafka {
            brokers: brokers.to_owned(),
            cql: cql.to_owned(),
            prefix: format!("bench{run}."),
            keyspace: format!("bench{run}"),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Kafka { .. } => "kafka+cassandra",
        }
    }
}

/// The `[limits]` (and `[budgets]`) of most scenarios: high enough that the load generator, many clients
/// behind few addresses sending at high rates, is never refused.
pub const BENCH_LIMITS: &str = "requests_per_second = 100000\nrequest_burst = 100000\nmax_connections = 1000000\nmax_seqs_per_sync = 10000\n\
     [budgets]\naccount_requests_per_second = 100000\naccount_request_burst = 100000\n\
     account_in_flight = 100000\naccount_connects_per_minute = 100000\n";

/// ferry's own default limits (the flood scenario measures them).
pub const DEFAULT_LIMITS: &str = "";

fn ferry_config(backend: &Backend, data: &Path, pod: &str, limits: &str) -> String {
    let mut cfg = format!(
        "data_dir = {data:?}\npod = \"{pod}\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nhs256_secret = \"{SECRET}\"\n\
         [api]\nservice_token = \"{SERVICE_TOKEN}\"\n\
         [limits]\n{limits}\
         [telemetry]\nlog_level = \"warn\"\n"
    );
    if let Backend::Kafka {
        brokers,
        cql,
        prefix,
        keyspace,
    } = backend
    {
        cfg.push_str(&format!(
            "[log]\nkind = \"kafka\"\n[store]\nkind = \"scylla\"\n\
             [kafka]\nbrokers = \"{brokers}\"\ntopic_prefix = \"{prefix}\"\npartitions = 8\n\
             [scylla]\nnodes = [\"{cql}\"]\nkeyspace = \"{keyspace}\"\n"
        ));
    }
    // Settings under comparison (e.g. `[kafka.properties]` with "linger.ms"), appended
    // to every pod's configuration.
    let mut extra = std::env::var("FERRY_BENCH_EXTRA_TOML").unwrap_or_default();
    if crate::counts::enabled() && matches!(backend, Backend::Kafka { .. }) {
        // librdkafka's request counters in /metrics (bench/src/counts.rs); the extra
        // settings' own `[kafka.properties]` lines join the same table.
        cfg.push_str("[kafka.properties]\n\"statistics.interval.ms\" = \"1000\"\n");
        if let Some(rest) = extra.trim_start().strip_prefix("[kafka.properties]") {
            extra = rest.to_owned();
        }
    }
    if !extra.is_empty() {
        cfg.push_str(&extra);
        cfg.push('\n');
    }
    cfg
}

/// Starts `pods` ferry processes sharing one backend (the embedded backend runs one),
/// with `limits` as the body of their `[limits]` table.
pub fn ferry(
    bin: &Path,
    backend: &Backend,
    pods: usize,
    limits: &str,
) -> anyhow::Result<Vec<Proc>> {
    let mut out = Vec::new();
    let dir = scratch("ferry")?;
    for p in 0..pods {
        let pod = format!("bench-{}", (b'a' + p as u8) as char);
        let data = dir.join(&pod);
        std::fs::create_dir_all(&data)?;
        let cfg_path = data.join("ferry.toml");
        std::fs::write(
            &cfg_path,
            ferry_config(backend, &data.join("data"), &pod, limits),
        )?;
        if p == 0 && matches!(backend, Backend::Kafka { .. }) {
            let ok = Command::new(bin)
                .arg("--config")
                .arg(&cfg_path)
                .arg("migrate")
                .stdout(Stdio::null())
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            if !ok.success() {
                bail!("ferry migrate failed");
            }
        }
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&cfg_path)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr = await_addr(&mut child, "ferry listening on http://")?;
        out.push(Proc {
            addr,
            child,
            dir: (p == 0).then(|| dir.clone()),
        });
    }
    for p in &out {
        wait_ready(&p.addr)?;
    }
    Ok(out)
}

fn wait_ready(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((200, _)) = crate::http::request(addr, "GET", "/readyz", None) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} not ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Centrifugo on its memory engine: HS256 JWT auth, channels with history, clients
/// allowed to subscribe and publish (so the same client publishes as it sends to ferry).
pub fn centrifugo(bin: &Path) -> anyhow::Result<Proc> {
    if !bin.exists() {
        bail!(
            "{} not found: build it with scripts/bench.sh (go install github.com/centrifugal/centrifugo/v6@v6.9.1)",
            bin.display()
        );
    }
    let dir = scratch("centrifugo")?;
    let port = free_port()?;
    let cfg = serde_json::json!({
        "client": {
            "token": { "hmac_secret_key": SECRET },
            "allowed_origins": ["*"],
        },
        "http_server": { "address": "127.0.0.1", "port": port },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_publish_for_client": true,
                "allow_publish_for_subscriber": true,
                "history_size": 100,
                "history_ttl": "300s",
            }
        },
        "health": { "enabled": true },
        "log": { "level": "error" },
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let addr = format!("127.0.0.1:{port}");
    let p = Proc {
        addr: addr.clone(),
        child,
        dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::http::request(&addr, "GET", "/health", None).map(|r| r.0) != Ok(200) {
        if Instant::now() > deadline {
            bail!("centrifugo did not answer /health within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(p)
}

/// The bare broadcast server of this crate, in its own process.
pub fn bare() -> anyhow::Result<Proc> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("bare-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let addr = await_addr(&mut child, "bare listening on ")?;
    Ok(Proc {
        addr,
        child,
        dir: None,
    })
}
