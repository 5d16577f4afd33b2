//! One typed configuration tree: TOML file, then `FERRY_*` environment, then defaults.
//! Unknown keys are rejected; `validate` names the key to fix before any port is bound.
//!
//! Each section's keys, defaults and checks live in the section's file below;
//! `validate` runs every section's check and reports every problem at once.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod auth;
mod budgets;
mod custom;
mod exposure;
mod limits;
mod log;
mod offline;
mod pipeline;
mod server;
mod session;
mod store;
mod telemetry;
#[cfg(test)]
mod tests;

pub(crate) use auth::AuthConfig;
pub(crate) use budgets::Budgets;
pub(crate) use custom::CustomConfig;
pub(crate) use exposure::{NoticeLimits, normalise_origin};
pub(crate) use limits::Limits;
pub(crate) use log::{KafkaConfig, LogConfig, LogKind};
pub(crate) use offline::{ForwarderConfig, OfflineConfig};
#[cfg(test)]
pub(crate) use pipeline::DEFAULT_TIERS_SECS;
pub(crate) use pipeline::{MAX_DELAY_SECS, PipelineConfig};
pub(crate) use server::ServerConfig;
pub(crate) use session::{DevicePolicy, SessionConfig};
pub(crate) use store::{
    DURABILITY_HORIZON_SECS, KEYSPACE_RULE, ScyllaConfig, StoreConfig, StoreKind, keyspace_name_ok,
};
pub(crate) use telemetry::{LogFormat, TelemetryConfig};

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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ApiConfig {
    /// Bearer token for the server API. With none, one is generated in data_dir.
    pub(crate) service_token: Option<String>,
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

/// A key whose value must lie in `range`.
fn in_range(
    bad: &mut Vec<Invalid>,
    key: &'static str,
    v: u64,
    range: std::ops::RangeInclusive<u64>,
) {
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
        self.server.validate(&mut bad);
        if self.pod.is_empty()
            || !self
                .pod
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bad.push(invalid("pod", "letters, digits, '-', '_' and '.' only"));
        }
        self.limits.validate(&mut bad);
        self.store.validate(&mut bad);
        let l = &self.limits;
        self.budgets
            .validate(l.max_response_bytes, l.max_frame_bytes, &mut bad);
        self.session.validate(&mut bad);
        self.pipeline.validate(&mut bad);
        self.log.validate(&mut bad);
        self.kafka.validate(self.log.kind, &mut bad);
        self.scylla.validate(self.store.kind, &mut bad);
        self.custom.validate(&mut bad);
        self.offline.validate(&mut bad);
        crate::budget::validate(self, &mut |key, problem| bad.push(invalid(key, problem)));
        self.telemetry.validate(&mut bad);
        exposure::validate(self, &mut bad);
        self.auth.validate(&mut bad);
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
