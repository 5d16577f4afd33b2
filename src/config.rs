//! One typed configuration tree: TOML file, then `FERRY_*` environment, then defaults.
//! Unknown keys are rejected; `validate` names the key to fix before any port is bound.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod budgets;
pub(crate) use budgets::Budgets;
mod exposure;
pub(crate) use exposure::{NoticeLimits, normalise_origin};

/// Top-level sections, so that `FERRY_<SECTION>__<KEY>` reaches them and unrelated
/// `FERRY_*` variables (FERRY_CONFIG, test settings) are not mistaken for keys.
const SECTIONS: &[&str] = &[
    "data_dir",
    "pod",
    "server",
    "auth",
    "limits",
    "budgets",
    "session",
    "log",
    "kafka",
    "store",
    "scylla",
    "pipeline",
    "api",
    "custom",
    "offline",
    "telemetry",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Where the embedded backends and generated development secrets live.
    pub(crate) data_dir: PathBuf,
    /// This process's identity; names its push topic. Defaults to the host name.
    pub(crate) pod: String,
    pub(crate) server: ServerConfig,
    pub(crate) auth: AuthConfig,
    pub(crate) limits: Limits,
    pub(crate) budgets: Budgets,
    pub(crate) session: SessionConfig,
    pub(crate) log: LogConfig,
    pub(crate) kafka: KafkaConfig,
    pub(crate) store: StoreConfig,
    pub(crate) scylla: ScyllaConfig,
    pub(crate) pipeline: PipelineConfig,
    pub(crate) api: ApiConfig,
    pub(crate) custom: CustomConfig,
    pub(crate) offline: OfflineConfig,
    pub(crate) telemetry: TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ferry-data"),
            pod: default_pod(),
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            budgets: Budgets::default(),
            session: SessionConfig::default(),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            store: StoreConfig::default(),
            scylla: ScyllaConfig::default(),
            pipeline: PipelineConfig::default(),
            api: ApiConfig::default(),
            custom: CustomConfig::default(),
            offline: OfflineConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

fn default_pod() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
    /// Address of the WebSocket, server API, health and metrics listener.
    pub(crate) listen: String,
    /// Connections the kernel holds for the listener before they are accepted (capped by
    /// `net.core.somaxconn`). A reconnect storm of more clients than this waits for SYN
    /// retries of 1, 3, 7… s.
    pub(crate) listen_backlog: u32,
    /// A connection that has not sent a complete request head within this time is
    /// closed (it would otherwise hold a file descriptor and the shutdown drain).
    pub(crate) header_read_timeout_secs: u64,
    /// Largest request head (request line and headers), bytes; at least 8192.
    pub(crate) max_header_bytes: usize,
    /// Testing only: mounts `/conformance/echo`, an unauthenticated WebSocket echo with
    /// `/ws`'s limits, for the Autobahn conformance suite. Refused off loopback.
    pub(crate) conformance_echo: bool,
    /// Browser origins (`scheme://host[:port]`) allowed to open a socket. Empty: any
    /// origin (with the demo on, loopback origins only). Clients that send no Origin
    /// (native apps) are always allowed.
    pub(crate) allowed_origins: Vec<String>,
    /// Host names besides loopback ones (localhost, 127.0.0.1, [::1]) the development
    /// endpoints (/demo) answer to: a DNS-rebound name is refused.
    pub(crate) dev_allowed_hosts: Vec<String>,
    /// Serves /demo and its token minting on a non-loopback listener too (still only
    /// with no auth key configured). Logged loudly: anyone who reaches it can mint a
    /// token for any user.
    pub(crate) demo_beyond_loopback: bool,
    /// A request body (/api/v1, /demo) not received in full within this time is
    /// answered 408.
    pub(crate) body_read_timeout_secs: u64,
    /// Connections accepted but not (yet) a connected WebSocket session: silent ones,
    /// ones in their request head, HTTP ones. Over it a new connection is closed at once.
    pub(crate) max_unconnected_sockets: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            listen_backlog: 4096,
            header_read_timeout_secs: 10,
            max_header_bytes: 32 << 10,
            conformance_echo: false,
            allowed_origins: Vec::new(),
            dev_allowed_hosts: Vec::new(),
            demo_beyond_loopback: false,
            body_read_timeout_secs: 10,
            max_unconnected_sockets: 4096,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthConfig {
    /// HS256 shared secret. With no key at all, a development secret is generated in data_dir.
    pub(crate) hs256_secret: Option<String>,
    /// PEM file with an RSA or EC public key (RS256 / ES256).
    pub(crate) public_key_file: Option<PathBuf>,
    /// JWKS file with RS256 / ES256 keys, chosen by `kid`.
    pub(crate) jwks_file: Option<PathBuf>,
    /// PEM private key used only by `ferry token` to sign with RS256/ES256.
    pub(crate) signing_key_file: Option<PathBuf>,
    /// Claim that must equal userId (default `sub`).
    pub(crate) subject_claim: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    /// Clock skew tolerated for exp/nbf, seconds (default 30).
    pub(crate) leeway_secs: Option<u64>,
    /// Longest token lifetime accepted (exp minus now), seconds (default 86400).
    pub(crate) max_token_lifetime_secs: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    /// Largest WebSocket frame or message accepted, bytes.
    pub(crate) max_frame_bytes: usize,
    /// Sustained requests per second per connection (token bucket).
    pub(crate) requests_per_second: u32,
    /// Burst above the sustained rate.
    pub(crate) request_burst: u32,
    /// Frames refused for the rate a connection may collect (one more each second)
    /// before it is closed with 1008: a client that keeps flooding is cut off.
    pub(crate) max_refusals: u32,
    /// Seconds a device closed for flooding must wait before it connects again
    /// (0: no wait); otherwise each reconnect would bring a fresh burst.
    pub(crate) flood_cooldown_secs: u64,
    pub(crate) max_msgs_per_send: usize,
    /// Messages sent with deliverAfter that one user may have pending (not yet due)
    /// on one process; a send past it is refused whole with a RequestError.
    pub(crate) max_pending_delayed_per_user: usize,
    /// Seqs per SyncMsgList, over all its items (a seq asked twice counts twice).
    pub(crate) max_seqs_per_sync: usize,
    /// Conversations (items) per SyncMsgList.
    pub(crate) max_convs_per_msg_sync: usize,
    pub(crate) max_convs_per_seq_sync: usize,
    /// Conversations per DiscoverConvs answer (its page bound; a client asks for at
    /// most this many with `limit`).
    pub(crate) max_convs_per_discovery: usize,
    /// Messages one clientMsgId may match for GetMsgById; an id shared by more is
    /// refused as ambiguous (clients make clientMsgIds unique; look up by serverMsgId).
    pub(crate) max_client_msg_id_matches: usize,
    /// Largest response or push of requested data (SyncMsgList, CustomRequest), bytes.
    pub(crate) max_response_bytes: usize,
    /// Sockets per process. Capped at startup below what the file-descriptor limit
    /// (RLIMIT_NOFILE) allows, keeping room for the backends' own files.
    pub(crate) max_connections: usize,
    /// Sockets per user on one process.
    pub(crate) max_connections_per_user: usize,
    /// Frames queued for one socket before it counts as a slow consumer and is closed.
    pub(crate) send_queue: usize,
    /// Bytes queued for one socket before it counts as a slow consumer and is closed.
    pub(crate) send_queue_bytes: usize,
    pub(crate) notices: NoticeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1 << 20,
            requests_per_second: 50,
            request_burst: 100,
            max_refusals: 50,
            flood_cooldown_secs: 10,
            max_msgs_per_send: 100,
            max_pending_delayed_per_user: 1000,
            max_seqs_per_sync: 1000,
            max_convs_per_msg_sync: 100,
            max_convs_per_seq_sync: 1000,
            max_convs_per_discovery: 100,
            max_client_msg_id_matches: 50,
            max_response_bytes: 4 << 20,
            max_connections: 100_000,
            max_connections_per_user: 20,
            send_queue: 512,
            send_queue_bytes: 8 << 20,
            notices: NoticeLimits::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DevicePolicy {
    /// Any number of devices; only the same (platform, deviceId) replaces.
    Multi,
    /// One device per platform: a new device kicks the others on its platform.
    OnePerPlatform,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SessionConfig {
    /// A socket silent (no frame, no ping) for longer than this is closed.
    pub(crate) idle_timeout_secs: u64,
    /// A queued frame the client's TCP window does not take within this many seconds
    /// closes the socket as a slow consumer (1013): a client that stops reading while
    /// a frame is being written is not waited for forever.
    pub(crate) write_timeout_secs: u64,
    pub(crate) device_policy: DevicePolicy,
    /// On shutdown, the bound on the whole drain: close sockets, finish requests in
    /// flight, flush and commit, delete the push topic (one deadline, see app.rs).
    pub(crate) shutdown_grace_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 60,
            write_timeout_secs: 20,
            device_policy: DevicePolicy::Multi,
            shutdown_grace_secs: 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogKind {
    Embedded,
    Kafka,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogConfig {
    pub(crate) kind: LogKind,
    /// Longest wait for the log to acknowledge an append before answering RetryError.
    pub(crate) append_timeout_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            kind: LogKind::Embedded,
            append_timeout_ms: 5000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KafkaConfig {
    pub(crate) brokers: String,
    /// Prepended to every topic and consumer group name.
    pub(crate) topic_prefix: String,
    pub(crate) partitions: i32,
    pub(crate) replication: i32,
    /// Extra librdkafka properties (security.protocol, sasl.*, ssl.*).
    pub(crate) properties: BTreeMap<String, String>,
    /// The largest record the brokers take (their `message.max.bytes`, 1,000,000 by
    /// default): librdkafka's `message.max.bytes`, the topics ferry creates and every
    /// size a client may send are derived from it (`budget.rs`). The embedded log
    /// refuses records over it too, so both backends accept the same requests.
    pub(crate) max_message_bytes: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic_prefix: "ferry.".to_owned(),
            partitions: 8,
            replication: 1,
            properties: BTreeMap::new(),
            max_message_bytes: 1_000_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoreKind {
    Embedded,
    Scylla,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StoreConfig {
    pub(crate) kind: StoreKind,
    /// How long a cached group member list or membership is used before it is read
    /// again, ms (0: not cached). Changes applied by this process's sequencer are
    /// seen at once; this bounds how late one applied by another process is seen.
    pub(crate) member_cache_ttl_ms: u64,
    /// Group members held in the member cache, over all groups.
    pub(crate) member_cache_entries: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            member_cache_ttl_ms: 1000,
            member_cache_entries: 1_000_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ScyllaConfig {
    pub(crate) nodes: Vec<String>,
    pub(crate) keyspace: String,
    /// Replication factor used by `ferry migrate` when it creates the keyspace.
    pub(crate) replication: u32,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// How far back the cluster may forget acknowledged writes when its nodes fail
    /// together: its `commitlog_sync_period` with `commitlog_sync: periodic`, 0 with
    /// `batch`. The sequencer keeps its offsets this far behind (`sequencer::horizon`).
    pub(crate) durability_horizon_secs: u64,
}

/// Cassandra's and ScyllaDB's default `commitlog_sync_period` (10 s, periodic sync).
pub(crate) const DURABILITY_HORIZON_SECS: u64 = 10;
/// A horizon longer than this holds offsets back for what is surely a mistake.
const DURABILITY_HORIZON_MAX_SECS: u64 = 600;

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "ferry".to_owned(),
            replication: 1,
            username: None,
            password: None,
            durability_horizon_secs: DURABILITY_HORIZON_SECS,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PipelineConfig {
    /// Delay ladder, seconds, ascending.
    pub(crate) delay_tiers_secs: Vec<u64>,
    /// Pending notices are pushed again at this interval until acked.
    pub(crate) notice_repush_secs: u64,
    /// A pod's presence not refreshed for this long is stale and ignored.
    pub(crate) presence_ttl_secs: u64,
    /// The sequencer appends a wave step's pushes to one pod as one record. Pods of
    /// versions without grouped push records deliver only plain ones: turn this off
    /// while such pods still run (a rolling upgrade), on again once all are upgraded.
    pub(crate) group_pushes: bool,
    /// A sequencer record failing (and retried) for longer than this makes `/readyz`
    /// answer 503: the pod is stuck, not merely slow.
    pub(crate) stuck_lane_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            delay_tiers_secs: crate::pipeline::delay::DEFAULT_TIERS_SECS.to_vec(),
            notice_repush_secs: 30,
            presence_ttl_secs: 90,
            group_pushes: true,
            stuck_lane_secs: 30,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ApiConfig {
    /// Bearer token for the server API. With none, one is generated in data_dir.
    pub(crate) service_token: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CustomConfig {
    /// CustomRequest method prefix -> upstream base URL; the longest prefix wins.
    pub(crate) routes: BTreeMap<String, String>,
    pub(crate) timeout_ms: u64,
}

impl Default for CustomConfig {
    fn default() -> Self {
        Self {
            routes: BTreeMap::new(),
            timeout_ms: 5000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct OfflineConfig {
    /// Hand off stored messages with `options.offlinePush` for recipients with no
    /// online device to the `<prefix>offline` topic.
    pub(crate) enabled: bool,
    /// Largest `offlinePush.title` / `.content` / `.payload` a message may carry,
    /// bytes (checked before the message is appended).
    pub(crate) max_title_bytes: usize,
    pub(crate) max_content_bytes: usize,
    pub(crate) max_payload_bytes: usize,
    /// Largest offline fan-out one request may cause: recipients × offline-push bytes
    /// of its messages with `offlinePush`, summed over its conversations.
    pub(crate) max_fanout_bytes: usize,
    pub(crate) forwarder: ForwarderConfig,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_title_bytes: 512,
            max_content_bytes: 4096,
            max_payload_bytes: 4096,
            max_fanout_bytes: 8 << 20,
            forwarder: ForwarderConfig::default(),
        }
    }
}

/// The optional forwarder role: posts offline events to the app's push service.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ForwarderConfig {
    /// Endpoint the events are POSTed to (https://…; http:// only for local set-ups).
    /// None: the forwarder role does not run.
    pub(crate) url: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub(crate) bearer_token: Option<String>,
    /// Most events per request.
    pub(crate) batch_max: usize,
    /// How long a batch waits for more events after its first, ms.
    pub(crate) batch_wait_ms: u64,
    /// Timeout of one request, ms.
    pub(crate) timeout_ms: u64,
    /// First wait after a failed request, ms; doubled per failure up to `retry_max_ms`.
    pub(crate) retry_initial_ms: u64,
    pub(crate) retry_max_ms: u64,
    /// Largest request body posted, bytes (JSON as sent): a batch is cut before it;
    /// the push service must accept bodies of this size.
    pub(crate) max_body_bytes: usize,
    /// Times an event refused for what it is (a 4xx answer other than 408 and 429)
    /// is posted before it goes to the offline dead-letter topic.
    pub(crate) max_refusals: u32,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            url: None,
            bearer_token: None,
            batch_max: 100,
            batch_wait_ms: 100,
            timeout_ms: 5000,
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            max_body_bytes: 1 << 20,
            max_refusals: 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TelemetryConfig {
    pub(crate) log_format: LogFormat,
    /// tracing-subscriber filter, e.g. `info,ferry=debug`.
    pub(crate) log_level: String,
    /// OTLP gRPC endpoint for traces (e.g. http://jaeger:4317); none: tracing off.
    pub(crate) otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled, 0.0..=1.0; traces continued from a sampled
    /// parent are always kept.
    pub(crate) sample_ratio: f64,
    /// service.name of the spans.
    pub(crate) service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "ferry".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// Every invalid key at once.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Invalid>),
}

/// One key with a value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {problem}")]
pub(crate) struct Invalid {
    pub(crate) key: &'static str,
    pub(crate) problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        key,
        problem: problem.into(),
    }
}

/// Keyspace names are pasted into CQL text, so only plain identifiers are accepted:
/// the one rule, used by validation and by the store before it sends any CQL.
pub(crate) fn keyspace_name_ok(ks: &str) -> bool {
    ks.len() <= 48
        && ks.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) const KEYSPACE_RULE: &str =
    "a letter, then letters, digits and '_', at most 48 characters";

impl Config {
    /// Loads the file (if any), then the environment, over the defaults.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Invalid(vec![invalid(
                    "--config",
                    format!("file {} does not exist", f.display()),
                )]));
            }
            fig = fig.merge(Toml::file(f));
        }
        let env = Env::prefixed("FERRY_")
            .filter(|k| {
                let first = k.as_str().split("__").next().unwrap_or("");
                SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
            })
            .split("__");
        let cfg: Config = fig.merge(env).extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every key and reports every problem at once, each naming its key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut bad = Vec::new();
        match self.server.listen.parse::<std::net::SocketAddr>() {
            Err(_) => bad.push(invalid(
                "server.listen",
                "expected host:port, e.g. 0.0.0.0:8080",
            )),
            Ok(listen) if self.server.conformance_echo && !listen.ip().is_loopback() => {
                bad.push(invalid(
                    "server.conformance_echo",
                    "an unauthenticated test endpoint: allowed only on a loopback server.listen",
                ))
            }
            Ok(_) => {}
        }
        if self.pod.is_empty()
            || !self
                .pod
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bad.push(invalid("pod", "letters, digits, '-', '_' and '.' only"));
        }
        if self.server.header_read_timeout_secs == 0 {
            bad.push(invalid(
                "server.header_read_timeout_secs",
                "must be greater than 0",
            ));
        }
        if self.server.listen_backlog == 0 {
            bad.push(invalid("server.listen_backlog", "must be greater than 0"));
        }
        if self.server.max_header_bytes < 8192 {
            bad.push(invalid("server.max_header_bytes", "must be at least 8192"));
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_frame_bytes", l.max_frame_bytes),
            ("limits.requests_per_second", l.requests_per_second as usize),
            ("limits.max_refusals", l.max_refusals as usize),
            ("limits.max_msgs_per_send", l.max_msgs_per_send),
            (
                "limits.max_pending_delayed_per_user",
                l.max_pending_delayed_per_user,
            ),
            ("limits.max_seqs_per_sync", l.max_seqs_per_sync),
            ("limits.max_convs_per_msg_sync", l.max_convs_per_msg_sync),
            ("limits.max_convs_per_seq_sync", l.max_convs_per_seq_sync),
            ("limits.max_convs_per_discovery", l.max_convs_per_discovery),
            (
                "limits.max_client_msg_id_matches",
                l.max_client_msg_id_matches,
            ),
            ("limits.max_response_bytes", l.max_response_bytes),
            ("limits.max_connections", l.max_connections),
            (
                "limits.max_connections_per_user",
                l.max_connections_per_user,
            ),
            ("limits.send_queue", l.send_queue),
            ("limits.send_queue_bytes", l.send_queue_bytes),
        ] {
            if v == 0 {
                bad.push(invalid(key, "must be greater than 0"));
            }
        }
        if l.max_pending_delayed_per_user < l.max_msgs_per_send {
            bad.push(invalid(
                "limits.max_pending_delayed_per_user",
                "must be at least limits.max_msgs_per_send",
            ));
        }
        if self.store.member_cache_ttl_ms > 60_000 {
            bad.push(invalid(
                "store.member_cache_ttl_ms",
                "at most 60000 (how long a membership change made elsewhere may go unseen)",
            ));
        }
        if self.store.member_cache_entries == 0 {
            bad.push(invalid(
                "store.member_cache_entries",
                "must be greater than 0",
            ));
        }
        self.budgets
            .validate(l.max_response_bytes, l.max_frame_bytes, &mut bad);
        if self.session.idle_timeout_secs == 0 {
            bad.push(invalid(
                "session.idle_timeout_secs",
                "must be greater than 0",
            ));
        }
        if self.session.write_timeout_secs == 0 {
            bad.push(invalid(
                "session.write_timeout_secs",
                "must be greater than 0",
            ));
        }
        let tiers = &self.pipeline.delay_tiers_secs;
        if tiers.is_empty() || tiers[0] == 0 || tiers.windows(2).any(|w| w[0] >= w[1]) {
            bad.push(invalid(
                "pipeline.delay_tiers_secs",
                "a strictly ascending list of positive seconds",
            ));
        }
        if self.pipeline.notice_repush_secs == 0 {
            bad.push(invalid(
                "pipeline.notice_repush_secs",
                "must be greater than 0",
            ));
        }
        if self.log.kind == LogKind::Kafka {
            if self.kafka.brokers.is_empty() {
                bad.push(invalid(
                    "kafka.brokers",
                    "required when log.kind = \"kafka\"",
                ));
            }
            if self.kafka.partitions < 1 || self.kafka.replication < 1 {
                bad.push(invalid(
                    "kafka.partitions",
                    "partitions and replication must be at least 1",
                ));
            }
        }
        if self.store.kind == StoreKind::Scylla && self.scylla.nodes.is_empty() {
            bad.push(invalid(
                "scylla.nodes",
                "required when store.kind = \"scylla\"",
            ));
        }
        if self.scylla.durability_horizon_secs > DURABILITY_HORIZON_MAX_SECS {
            bad.push(invalid(
                "scylla.durability_horizon_secs",
                "at most 600 (the commit log sync period, seconds; 0 with batch sync)",
            ));
        }
        if !keyspace_name_ok(&self.scylla.keyspace) {
            bad.push(invalid("scylla.keyspace", KEYSPACE_RULE));
        }
        for (key, v, range) in [
            (
                "pipeline.presence_ttl_secs",
                self.pipeline.presence_ttl_secs,
                3..=86_400,
            ),
            ("custom.timeout_ms", self.custom.timeout_ms, 1..=600_000),
            (
                "log.append_timeout_ms",
                self.log.append_timeout_ms,
                1..=600_000,
            ),
        ] {
            if !range.contains(&v) {
                bad.push(invalid(
                    key,
                    format!(
                        "must be between {} and {}, not {v}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        for (prefix, url) in &self.custom.routes {
            if !prefix.starts_with('/') {
                bad.push(invalid(
                    "custom.routes",
                    format!("method prefix {prefix:?} must start with '/'"),
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad.push(invalid(
                    "custom.routes",
                    format!("upstream {url:?} must be an http(s) URL"),
                ));
            }
        }
        let fw = &self.offline.forwarder;
        if let Some(url) = &fw.url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bad.push(invalid(
                "offline.forwarder.url",
                format!("{url:?} must be an https:// (or, locally, http://) URL"),
            ));
        }
        for (key, v) in [
            ("offline.forwarder.batch_max", fw.batch_max as u64),
            ("offline.forwarder.timeout_ms", fw.timeout_ms),
            ("offline.forwarder.retry_initial_ms", fw.retry_initial_ms),
        ] {
            if v == 0 {
                bad.push(invalid(key, "must be greater than 0"));
            }
        }
        if fw.batch_max > 10_000 {
            bad.push(invalid("offline.forwarder.batch_max", "at most 10000"));
        }
        if fw.retry_max_ms < fw.retry_initial_ms {
            bad.push(invalid(
                "offline.forwarder.retry_max_ms",
                "must be at least offline.forwarder.retry_initial_ms",
            ));
        }
        crate::budget::validate(self, &mut |key, problem| bad.push(invalid(key, problem)));
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            bad.push(invalid("telemetry.sample_ratio", "between 0.0 and 1.0"));
        }
        exposure::validate(self, &mut bad);
        let auth = &self.auth;
        if auth.hs256_secret.as_deref().is_some_and(|s| s.len() < 16) {
            bad.push(invalid("auth.hs256_secret", "use at least 16 bytes"));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(bad))
        }
    }

    /// The configuration as `ferry config` prints it: secrets show that they are
    /// set, never their value.
    pub(crate) fn redacted(&self) -> Config {
        const SET: &str = "set";
        let mut c = self.clone();
        for secret in [
            &mut c.auth.hs256_secret,
            &mut c.scylla.password,
            &mut c.api.service_token,
            &mut c.offline.forwarder.bearer_token,
        ] {
            if secret.is_some() {
                *secret = Some(SET.to_owned());
            }
        }
        for (k, v) in &mut c.kafka.properties {
            let k = k.to_ascii_lowercase();
            if k.contains("password") || k.contains("secret") || k.contains("jaas") {
                *v = SET.to_owned();
            }
        }
        // URLs can carry credentials too: user info, or a key in the query string.
        for url in [&mut c.offline.forwarder.url, &mut c.telemetry.otlp_endpoint]
            .into_iter()
            .flatten()
            .chain(c.custom.routes.values_mut())
        {
            *url = crate::redact::url(url);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ferry.toml");
        std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap();
        let err = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let mut c = Config::default();
        c.pipeline.delay_tiers_secs = vec![5, 1];
        c.scylla.keyspace = "9lives".into();
        c.pipeline.presence_ttl_secs = 0;
        c.custom.timeout_ms = 0;
        c.log.append_timeout_ms = 10_000_000;
        c.server.listen_backlog = 0;
        let err = c.validate().unwrap_err().to_string();
        for key in [
            "pipeline.delay_tiers_secs",
            "scylla.keyspace",
            "pipeline.presence_ttl_secs",
            "custom.timeout_ms",
            "log.append_timeout_ms",
            "server.listen_backlog",
        ] {
            assert!(
                err.contains(&format!("`{key}`")),
                "{key} missing from: {err}"
            );
        }
        assert_eq!(err.lines().count(), 6, "{err}");
    }

    #[test]
    fn the_durability_horizon_defaults_to_the_periodic_sync_and_is_bounded() {
        let mut c = Config::default();
        assert_eq!(c.scylla.durability_horizon_secs, 10);
        c.scylla.durability_horizon_secs = 0;
        assert!(
            c.validate().is_ok(),
            "0: the store syncs before it acknowledges"
        );
        c.scylla.durability_horizon_secs = 601;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`scylla.durability_horizon_secs`"), "{err}");
    }

    #[test]
    fn keyspace_rule() {
        for ok in ["ferry", "ferry_test_1a", &"k".repeat(48)] {
            assert!(keyspace_name_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "9lives",
            "_x",
            "x-y",
            "x; DROP KEYSPACE system",
            &"k".repeat(49),
        ] {
            assert!(!keyspace_name_ok(bad), "{bad}");
        }
    }

    #[test]
    fn redacted_shows_secrets_are_set_not_their_value() {
        let mut c = Config::default();
        c.auth.hs256_secret = Some("hs-secret-value-123456".into());
        c.scylla.password = Some("db-password-value".into());
        c.api.service_token = Some("service-token-value".into());
        c.kafka
            .properties
            .insert("sasl.password".into(), "kafka-password-value".into());
        c.kafka
            .properties
            .insert("client.id".into(), "visible-client".into());
        c.offline.forwarder.bearer_token = Some("forwarder-bearer-value".into());
        c.offline.forwarder.url =
            Some("https://push:url-password-value@push.internal/v1?tok%65n=url-token-value".into());
        c.custom.routes.insert(
            "/v1".into(),
            "http://up.internal/base?x=1&api%5Fkey=route-key-value".into(),
        );
        let shown = toml::to_string_pretty(&c.redacted()).unwrap();
        for secret in [
            "forwarder-bearer-value",
            "url-password-value",
            "url-token-value",
            "route-key-value",
            "hs-secret-value-123456",
            "db-password-value",
            "service-token-value",
            "kafka-password-value",
        ] {
            assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
        }
        assert!(shown.contains("hs256_secret = \"set\""), "{shown}");
        assert!(shown.contains("visible-client"), "{shown}");
        let unset = toml::to_string_pretty(&Config::default().redacted()).unwrap();
        assert!(
            !unset.contains("\"set\""),
            "an unset secret stays unset:\n{unset}"
        );
    }

    #[test]
    fn the_conformance_echo_needs_a_loopback_listener() {
        let mut c = Config::default();
        c.server.conformance_echo = true;
        c.validate().unwrap();
        c.server.listen = "0.0.0.0:8080".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("server.conformance_echo"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::default();
        c.pipeline.delay_tiers_secs = vec![5, 1];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("pipeline.delay_tiers_secs"), "{err}");
    }

    #[test]
    fn the_forwarder_needs_an_http_url_and_sane_retries() {
        let mut c = Config::default();
        c.offline.forwarder.url = Some("push.internal/v1".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("offline.forwarder.url"), "{err}");
        c.offline.forwarder.url = Some("https://push.internal/v1".into());
        c.validate().unwrap();
        c.offline.forwarder.retry_max_ms = 10;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("offline.forwarder.retry_max_ms"), "{err}");
    }
}
