//! The `[custom]` section: where CustomRequests are forwarded, and how long they
//! may take.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Invalid, in_range, invalid};

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

impl CustomConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        in_range(bad, "custom.timeout_ms", self.timeout_ms, 1..=600_000);
        for (prefix, url) in &self.routes {
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
    }
}
