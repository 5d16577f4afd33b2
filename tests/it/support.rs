//! Test support: spawns the real ferry binary on port 0 and talks to it with a real
//! WebSocket client speaking protobuf.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::proto::pb;

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const SERVICE_TOKEN: &str = "test-service-token";

/// Which backends a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// Kafka + CQL (Cassandra or ScyllaDB) from FERRY_TEST_KAFKA / FERRY_TEST_CQL.
    Kafka,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name unique to this test run, for topics, keyspaces and users.
pub fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!("{prefix}{}x{t}x{n}", std::process::id())
}

/// One deployment under test: its data dir, config and the settings shared by its pods.
pub struct Cluster {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    /// Extra TOML appended to every pod's config.
    pub extra: String,
    prefix: String,
    keyspace: String,
    kafka: String,
    cql: String,
}

pub fn kafka_addr() -> String {
    std::env::var("FERRY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn cql_addr() -> String {
    std::env::var("FERRY_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

impl Cluster {
    pub fn new(backend: Backend, extra: &str) -> Self {
        Self::on(backend, extra, &kafka_addr(), &cql_addr())
    }

    /// A deployment on the given Kafka and CQL addresses (its own instances).
    pub fn on(backend: Backend, extra: &str, kafka: &str, cql: &str) -> Self {
        let c = Self {
            backend,
            dir: tempfile::tempdir().unwrap(),
            extra: extra.to_owned(),
            prefix: format!("{}.", unique("t")),
            keyspace: unique("ks_"),
            kafka: kafka.to_owned(),
            cql: cql.to_owned(),
        };
        if backend == Backend::Kafka {
            let out = c.ferry(&["migrate"], "pod-migrate").output().unwrap();
            assert!(
                out.status.success(),
                "ferry migrate failed (is Cassandra running? see README):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        c
    }

    /// Runs an admin command to completion; its stdout (panics with its stderr and
    /// stdout when it fails).
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.ferry(args, "pod-admin").output().unwrap();
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "ferry {args:?} failed:\n{se}\nstdout:\n{so}"
        );
        so
    }

    /// `admin` with the command written as one line of words.
    pub fn admin_words(&self, command: &str) -> String {
        self.admin(&command.split_whitespace().collect::<Vec<_>>())
    }

    /// The deployment's CQL keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The full name of one of the deployment's Kafka topics.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn config(&self, pod: &str) -> PathBuf {
        let data = self.dir.path().join(match self.backend {
            Backend::Embedded => "data".to_owned(),
            Backend::Kafka => format!("data-{pod}"),
        });
        let backend = match self.backend {
            Backend::Embedded => String::new(),
            Backend::Kafka => format!(
                "[log]\nkind = \"kafka\"\n[store]\nkind = \"scylla\"\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\npartitions = 2\n[scylla]\nnodes = [\"{}\"]\nkeyspace = \"{}\"\n",
                self.kafka, self.prefix, self.cql, self.keyspace
            ),
        };
        let text = format!(
            "data_dir = {data:?}\npod = \"{pod}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[api]\nservice_token = \"{SERVICE_TOKEN}\"\n{backend}{}\n",
            self.extra
        );
        let path = self.dir.path().join(format!("{pod}.toml"));
        std::fs::write(&path, merge_toml(&text)).unwrap();
        path
    }

    pub fn ferry(&self, args: &[&str], pod: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("--config").arg(self.config(pod)).args(args);
        cmd.env_remove("FERRY_CONFIG")
            .env("RUST_LOG", "info,ferry=debug");
        cmd
    }

    /// Starts the deployment a scenario runs on: one pod on the embedded backend; on
    /// Kafka two pods, users placed alternately on them, so senders and recipients
    /// sit on different pods.
    ///
    /// Both pods are ready (`/readyz`: every consumer group joined) before it returns,
    /// as a readiness probe would have them before traffic arrives: a scenario's first
    /// messages are then not sequenced in the middle of the peer's arrival in the
    /// group, where a partition moving before its offsets were committed is read again
    /// by its new owner and its messages pushed a second time (at least once; the
    /// fault tests cover that case).
    pub fn start(&self, pod: &str) -> Ferry {
        let mut f = self.start_with(pod, &[]);
        if self.backend == Backend::Kafka {
            let peer = self.start_with(&format!("{pod}-peer"), &[]);
            f.wait_ready();
            peer.wait_ready();
            f.peer = Some(Box::new(peer));
        }
        f
    }

    pub fn start_with(&self, pod: &str, args: &[&str]) -> Ferry {
        self.start_env(pod, args, &[])
    }

    /// Starts a pod with extra environment (e.g. `FERRY_FAULTS` arming fault points).
    pub fn start_env(&self, pod: &str, args: &[&str], env: &[(&str, &str)]) -> Ferry {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let log = self.dir.path().join(format!("{pod}.log"));
        // Appended: a pod started again under its name keeps its earlier lives' logs.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = self
            .ferry(&all, pod)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let listening = std::iter::from_fn(|| {
            lines
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .ok()
        })
        .find_map(|line| {
            line.strip_prefix("ferry listening on http://")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        });
        let addr = match listening {
            Some(a) => a,
            None => {
                let _ = child.kill();
                panic!(
                    "ferry did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Ferry {
            child,
            addr,
            log,
            pod: pod.to_owned(),
            peer: None,
            placed: Default::default(),
        }
    }
}

/// The lines `child` writes to its piped stdout, as they come (read on a thread of
/// their own, so the child never blocks on a full pipe).
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Later keys of the same table override earlier ones (tests append overrides).
fn merge_toml(text: &str) -> String {
    let mut root = toml::Table::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(h) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            current = h.split('.').map(str::to_owned).collect();
            continue;
        }
        let kv: toml::Table =
            toml::from_str(l).unwrap_or_else(|e| panic!("bad toml line {l:?}: {e}"));
        let mut t = &mut root;
        for part in &current {
            t = t
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
        }
        for (k, v) in kv {
            t.insert(k, v);
        }
    }
    toml::to_string(&root).unwrap()
}

/// A running ferry process, with its peer pod when the scenario has two.
pub struct Ferry {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
    pub pod: String,
    pub peer: Option<Box<Ferry>>,
    /// user -> on the peer pod
    placed: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl Ferry {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGTERM, then wait for a clean exit (the peer pod too).
    pub fn stop(mut self) -> std::process::ExitStatus {
        if let Some(peer) = self.peer.take() {
            assert!(peer.stop().success(), "the peer pod exited uncleanly");
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Name how the pod stopped in the test's output (shown when the test
                // fails): its last warnings and errors, e.g. a drain that ran out of
                // time or a commit skipped during a rebalance.
                let logs = self.logs();
                let bad: Vec<&str> = logs
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                eprintln!(
                    "{} exited with {s}; its last warnings and errors:\n{}",
                    self.pod,
                    bad[bad.len().saturating_sub(20)..].join("\n")
                );
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("ferry did not stop within 30 s after SIGTERM");
    }

    pub fn kill9(mut self) {
        if let Some(peer) = self.peer.take() {
            peer.kill9();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of this pod's log containing every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> usize {
        self.logs()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Waits until at least `n` log lines contain every one of `needles`.
    pub async fn wait_log(&self, needles: &[&str], n: usize, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.log_lines(needles) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: fewer than {n} log lines with {needles:?} within {within:?}",
                self.pod
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to end on its own; its exit status.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: still running after {within:?}",
                self.pod
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls the server API.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .request(method, self.http(&format!("/api/v1{path}")))
            .bearer_auth(SERVICE_TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// This pod's /metrics text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.http("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The pods this pod's presence view lists for `user`.
    pub async fn presence(&self, user: &str) -> Vec<String> {
        let (_, body) = self
            .api(
                reqwest::Method::GET,
                &format!("/users/{user}/presence"),
                None,
            )
            .await;
        body["pods"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn add_member(&self, group: &str, user: &str) {
        let (s, b) = self
            .api(
                reqwest::Method::PUT,
                &format!("/groups/{group}/members/{user}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "add member: {b}");
    }
}

impl Ferry {
    /// Waits (up to 60 s) until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            let status = self.readyz();
            if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
                eprintln!("{} ready after {:?}", self.pod, started.elapsed());
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} not ready within 60 s: {status}",
                self.pod
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/readyz`'s whole answer, or why there was none (a blocking GET: `start` is
    /// not async).
    fn readyz(&self) -> String {
        use std::io::{Read, Write};
        let get = || -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(&self.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            )?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        };
        get().unwrap_or_else(|e| format!("no answer: {e}"))
    }
}

/// A Kafka deployment's topics, groups and keyspace go with it (`leftovers.rs`).
impl Drop for Cluster {
    fn drop(&mut self) {
        if self.backend == Backend::Kafka {
            crate::leftovers::remove(&self.kafka, &self.cql, &self.prefix, &self.keyspace);
        }
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token(user: &str) -> String {
    token_with(user, 3600, &[])
}

pub fn token_with(user: &str, ttl: i64, extra: &[(&str, &str)]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + ttl });
    for (k, v) in extra {
        claims[*k] = serde_json::Value::String((*v).to_owned());
    }
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A protocol client.
pub struct Client {
    pub ws: Ws,
    pub user: String,
    /// Pushes and responses read while waiting for something else.
    backlog: Vec<pb::PushBody>,
    next_req: u64,
}

/// What `Client::next_frame` saw.
pub enum Frame {
    Push(pb::PushBody),
    /// Nothing within the wait.
    Quiet,
    Closed,
}

/// What a connection attempt ended with.
pub enum Connect {
    Connected(Box<Client>),
    Closed(u16, String),
}

pub async fn connect_url(url: &str) -> Connect {
    try_connect_url(url).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Like `connect_url`, for callers that expect the server to be down at times.
pub async fn try_connect_url(url: &str) -> Result<Connect, String> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "WebSocket upgrade timed out".to_owned())?
    .map_err(|e| format!("WebSocket upgrade: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no first frame".to_owned())?
    {
        Some(Ok(WsMessage::Text(t))) => {
            assert_eq!(t.as_str(), "connected");
            Ok(Connect::Connected(Box::new(Client {
                ws,
                user: String::new(),
                backlog: Vec::new(),
                next_req: 0,
            })))
        }
        Some(Ok(WsMessage::Close(Some(CloseFrame { code, reason })))) => {
            Ok(Connect::Closed(code.into(), reason.to_string()))
        }
        other => Err(format!("unexpected first frame {other:?}")),
    }
}

pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Ferry {
    pub async fn connect(&self, user: &str) -> Client {
        self.connect_device(user, "ios", "dev-1").await
    }

    pub async fn connect_device(&self, user: &str, platform: &str, device: &str) -> Client {
        let Some(peer) = &self.peer else {
            return self.connect_here(user, platform, device).await;
        };
        let on_peer = {
            let mut placed = self.placed.lock().unwrap();
            let n = placed.len();
            *placed.entry(user.to_owned()).or_insert(n % 2 == 1)
        };
        let target: &Ferry = if on_peer { peer } else { self };
        let client = target.connect_here(user, platform, device).await;
        // Routable from both pods before the scenario goes on.
        for pod in [self, &**peer] {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                if pod.presence(user).await.contains(&target.pod) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: presence of {user} never showed {}",
                    pod.pod,
                    target.pod
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        client
    }

    /// Connects `user`'s device to this pod with a valid token; what the attempt
    /// ended with (connected, or closed with a code and reason).
    pub async fn attempt(&self, user: &str, platform: &str, device: &str) -> Connect {
        let tok = token(user);
        let q = query(&[
            ("token", &tok),
            ("userId", user),
            ("platform", platform),
            ("deviceId", device),
            ("language", "en"),
        ]);
        connect_url(&format!("{}?{q}", self.ws_url())).await
    }

    async fn connect_here(&self, user: &str, platform: &str, device: &str) -> Client {
        match self.attempt(user, platform, device).await {
            Connect::Connected(mut c) => {
                c.user = user.to_owned();
                *c
            }
            Connect::Closed(code, reason) => panic!("connect refused: {code} {reason}"),
        }
    }
}

/// A decoded response.
#[derive(Debug)]
pub struct Resp {
    pub code: i32,
    pub data: bytes::Bytes,
    pub msg: Option<String>,
}

impl Resp {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected Success, got {} ({:?})",
            self.code, self.msg
        );
        self
    }
    pub fn decode<T: prost::Message + Default>(&self) -> T {
        T::decode(self.data.clone()).unwrap()
    }
}

impl Client {
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    /// Sends a request and waits up to `within` for its response; None when the
    /// socket closed or nothing came (other frames are kept).
    pub async fn try_request(
        &mut self,
        event: pb::ActiveEvent,
        data: Vec<u8>,
        within: Duration,
    ) -> Option<Resp> {
        let (req_id, frame) = self.next_request(event, data);
        self.ws.send(WsMessage::Binary(frame.into())).await.ok()?;
        self.try_response(&req_id, within).await
    }

    /// A RequestBody for `event` under a fresh reqId: (reqId, encoded frame).
    fn next_request(&mut self, event: pb::ActiveEvent, data: Vec<u8>) -> (String, Vec<u8>) {
        self.next_req += 1;
        let req_id = format!("r{}", self.next_req);
        let body = pb::RequestBody {
            event: event as i32,
            req_id: req_id.clone(),
            data: data.into(),
        };
        (req_id, body.encode_to_vec())
    }

    /// The next server frame: kept ones first, then the socket's.
    pub async fn next_frame(&mut self, within: Duration) -> Frame {
        if !self.backlog.is_empty() {
            return Frame::Push(self.backlog.remove(0));
        }
        match tokio::time::timeout(within, self.ws.next()).await {
            Err(_) => Frame::Quiet,
            Ok(Some(Ok(WsMessage::Binary(b)))) => {
                Frame::Push(pb::PushBody::decode(b).expect("server frames are PushBody"))
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(WsMessage::Close(_)))) => Frame::Closed,
            Ok(Some(Ok(_))) => Frame::Quiet,
        }
    }

    /// Drops the frames kept while waiting for something else.
    pub fn clear_backlog(&mut self) {
        self.backlog.clear();
    }

    /// Sends a request and waits for its response (other frames are kept).
    pub async fn request(&mut self, event: pb::ActiveEvent, data: Vec<u8>) -> Resp {
        let (req_id, frame) = self.next_request(event, data);
        self.send_raw(frame).await;
        self.response(&req_id).await
    }

    pub async fn response(&mut self, req_id: &str) -> Resp {
        let is_it = |p: &pb::PushBody| answers(p, req_id);
        match self.wait_for(Duration::from_secs(15), is_it).await {
            Waited::Matched(r) => resp(r),
            Waited::TimedOut => panic!("{}: no response to {req_id} within 15 s", self.user),
            Waited::Closed(why) => panic!(
                "{}: no response to {req_id}: the socket closed ({why})",
                self.user
            ),
        }
    }

    /// The response to `req_id` within `within`; None when the socket closed or
    /// nothing came (other frames are kept).
    async fn try_response(&mut self, req_id: &str, within: Duration) -> Option<Resp> {
        let r = self.wait(within, |p| answers(p, req_id)).await?;
        Some(resp(r))
    }

    /// Waits up to `within` for a frame matching `pred`; frames read meanwhile are kept.
    /// None when nothing matched in time or the socket closed.
    pub async fn wait(
        &mut self,
        within: Duration,
        pred: impl Fn(&pb::PushBody) -> bool,
    ) -> Option<pb::PushBody> {
        match self.wait_for(within, pred).await {
            Waited::Matched(p) => Some(p),
            Waited::TimedOut | Waited::Closed(_) => None,
        }
    }

    async fn wait_for(&mut self, within: Duration, pred: impl Fn(&pb::PushBody) -> bool) -> Waited {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Waited::Matched(self.backlog.remove(i));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Waited::TimedOut,
                Ok(None) => return Waited::Closed("stream ended".into()),
                Ok(Some(f)) => f,
            };
            match frame {
                Ok(WsMessage::Binary(b)) => {
                    let p = pb::PushBody::decode(b).expect("server frames are PushBody");
                    if pred(&p) {
                        return Waited::Matched(p);
                    }
                    self.backlog.push(p);
                }
                Ok(WsMessage::Close(f)) => return Waited::Closed(format!("close frame {f:?}")),
                Err(e) => return Waited::Closed(format!("socket error {e}")),
                Ok(_) => {}
            }
        }
    }

    /// Reads for `within` and panics if the socket closes meanwhile; frames read are
    /// kept for later waits.
    pub async fn stays_open(&mut self, within: Duration) {
        if let Waited::Closed(why) = self.wait_for(within, |_| false).await {
            panic!("{}: socket closed: {why}", self.user);
        }
    }

    /// The next pushed messages (PushMsgDataList), or panics after `within`.
    pub async fn messages(&mut self, within: Duration) -> Vec<pb::MsgData> {
        let p = self
            .wait(within, |p| p.event == pb::PushEvent::PushMsgDataList as i32)
            .await;
        let p = p.unwrap_or_else(|| panic!("{}: no message push within {within:?}", self.user));
        pb::MsgDataList::decode(p.data).unwrap().msg_data_list
    }

    /// Collects pushed messages until `n` arrived.
    pub async fn collect_messages(&mut self, n: usize, within: Duration) -> Vec<pb::MsgData> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .wait(left, |p| p.event == pb::PushEvent::PushMsgDataList as i32)
                .await
            {
                Some(p) => out.extend(pb::MsgDataList::decode(p.data).unwrap().msg_data_list),
                None => panic!(
                    "{}: got {} of {n} messages within {within:?}",
                    self.user,
                    out.len()
                ),
            }
        }
        out
    }

    /// No message push arrives within `within`, and the socket stays open meanwhile
    /// (a closed socket would receive nothing either).
    pub async fn no_messages(&mut self, within: Duration) {
        match self
            .wait_for(within, |p| p.event == pb::PushEvent::PushMsgDataList as i32)
            .await
        {
            Waited::TimedOut => {}
            Waited::Matched(p) => panic!(
                "{}: unexpected push {:?}",
                self.user,
                pb::MsgDataList::decode(p.data).unwrap()
            ),
            Waited::Closed(why) => panic!("{}: socket closed: {why}", self.user),
        }
    }

    pub async fn notices(&mut self, within: Duration) -> Option<Vec<pb::NoticeData>> {
        let p = self
            .wait(within, |p| {
                p.event == pb::PushEvent::PushNoticeDataList as i32
            })
            .await?;
        Some(pb::NoticeDataList::decode(p.data).unwrap().notice_data_list)
    }

    /// Waits for the server to close the socket; returns code and reason.
    pub async fn closed(&mut self, within: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("{}: socket not closed within {within:?}", self.user),
                Ok(Some(Ok(WsMessage::Close(Some(f))))) => {
                    return (f.code.into(), f.reason.to_string());
                }
                Ok(Some(Ok(WsMessage::Close(None)))) | Ok(None) => return (1005, String::new()),
                Ok(Some(Err(e))) => {
                    panic!("{}: socket error instead of a close frame: {e}", self.user)
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn send_text(&mut self, conv: &str, text: &str) -> Resp {
        self.send_msgs(vec![msg(&self.user.clone(), conv, text)], None)
            .await
    }

    pub async fn send_msgs(&mut self, msgs: Vec<pb::MsgData>, deliver_after: Option<i32>) -> Resp {
        let req = pb::SendMsgListReq {
            msg_data_list: msgs,
            deliver_after,
            ..Default::default()
        };
        self.request(pb::ActiveEvent::SendMsgList, req.encode_to_vec())
            .await
    }

    pub async fn conv_seq(&mut self, conv: &str) -> pb::batch_get_conv_seq_resp::ConvSeq {
        let req = pb::BatchGetConvSeqReq {
            conv_id_list: vec![conv.to_owned()],
            ..Default::default()
        };
        let r = self
            .request(pb::ActiveEvent::SyncConvSeq, req.encode_to_vec())
            .await;
        r.ok();
        r.decode::<pb::BatchGetConvSeqResp>()
            .conv_seq_map
            .remove(conv)
            .expect("an entry per convId")
    }

    pub async fn sync(&mut self, conv: &str, seqs: &[u64]) -> Vec<pb::MsgData> {
        let item = pb::batch_get_msg_list_by_conv_id_req::Item {
            conv_id: conv.to_owned(),
            seq_list: seqs.iter().map(u64::to_string).collect(),
        };
        let req = pb::BatchGetMsgListByConvIdReq {
            items: vec![item],
            ..Default::default()
        };
        let r = self
            .request(pb::ActiveEvent::SyncMsgList, req.encode_to_vec())
            .await;
        r.ok();
        r.decode::<pb::GetMsgListResp>().msg_data_list
    }
}

/// Two fresh users of one single chat, each with a client connected to `f` (placed
/// as `Ferry::connect` places them): (a, b, conv, a's client, b's client).
pub async fn chat(f: &Ferry) -> (String, String, String, Client, Client) {
    let (a, b) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{b}");
    let a1 = f.connect(&a).await;
    let b1 = f.connect(&b).await;
    (a, b, conv, a1, b1)
}

/// An AckNotice payload for notice `id` of `conv`.
pub fn ack_notice(conv: &str, id: &str) -> Vec<u8> {
    pb::AckNoticeDataReq {
        notice_id: id.into(),
        conv_id: conv.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A text message from `sender` with a fresh clientMsgId.
pub fn msg(sender: &str, conv: &str, text: &str) -> pb::MsgData {
    pb::MsgData {
        client_msg_id: unique("c"),
        client_time: "1700000000000".into(),
        sender_id: sender.to_owned(),
        conv_id: conv.to_owned(),
        content_type: 11,
        content: text.as_bytes().to_vec().into(),
        options: Some(pb::msg_data::Options {
            storage_for_server: true,
            storage_for_client: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn text(m: &pb::MsgData) -> String {
    String::from_utf8(m.content.to_vec()).unwrap()
}

pub const SEC: Duration = Duration::from_secs(1);

/// Polls `f` until it returns Some, for at most `within`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `p` is the response to `req_id`.
fn answers(p: &pb::PushBody, req_id: &str) -> bool {
    p.event == pb::PushEvent::PushResponseBody as i32
        && pb::ResponseBody::decode(p.data.clone()).unwrap().req_id == req_id
}

/// A response frame's code, data and CommonResp message.
fn resp(r: pb::PushBody) -> Resp {
    let body = pb::ResponseBody::decode(r.data).unwrap();
    let msg = pb::CustomResponseError::decode(body.data.clone())
        .ok()
        .and_then(|e| e.common_resp)
        .and_then(|c| c.msg);
    Resp {
        code: body.code,
        data: body.data,
        msg,
    }
}

/// How a wait for a frame ended.
enum Waited {
    Matched(pb::PushBody),
    TimedOut,
    Closed(String),
}

/// The pace of a load client that sends as fast as its acks come back: 40 requests
/// per second, under ferry's default per-connection limit (50/s), as the SDKs pace
/// themselves. Faster, it would be refused and, refused on and on, cut off (1008)
/// as a flooder. A late answer does not bring a burst of catch-up sends.
pub fn sdk_pace() -> tokio::time::Interval {
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pace
}

/// A refused send (RetryError: over the rate limit, or the log slow) is retried
/// later, as the SDKs do: a client that retries at once keeps being refused and is
/// cut off (1008) as a flooder.
pub async fn refused_backoff() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}
