//! The forwarder role (optional): consumes `<prefix>offline` in its own consumer
//! group and POSTs the events in batches to the app's push service, which holds the
//! device tokens. A batch is retried with exponential backoff until the endpoint
//! answers 2xx, and only then are its offsets committed: at least once, never a
//! skipped event. Each event carries its idempotency key (`handoff.rs`), so the
//! endpoint drops the duplicates a retry or a restart may cause.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handoff;
use crate::backoff;
use crate::config::ForwarderConfig;
use crate::msglog::{LogRecord, MsgLog, Topics};

/// How often the forwarder's lag is sampled into `ferry_offline_forwarder_lag`.
const LAG_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Forwarder {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) cfg: ForwarderConfig,
    /// The endpoint, `cfg.url` checked present when the role was chosen.
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
}

/// Why a request did not count as delivered.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("endpoint answered {0}")]
    Status(reqwest::StatusCode),
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
}

/// How long a post in flight when shutdown begins may take to be answered.
const ANSWER_ON_SHUTDOWN: Duration = Duration::from_secs(2);

impl Forwarder {
    pub(crate) async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let topic = self.topics.offline();
        let group = self.topics.group("offline-forwarder");
        let mut sub = self
            .log
            .subscribe(&group, std::slice::from_ref(&topic))
            .await?;
        let lag = tokio::spawn(sample_lag(
            self.log.clone(),
            group,
            topic,
            cancel.child_token(),
        ));
        let wait = Duration::from_millis(self.cfg.batch_wait_ms);
        'batches: loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => break,
                rec = sub.next() => rec?,
            };
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + wait;
            while batch.len() < self.cfg.batch_max {
                tokio::select! {
                    // An unsent batch is not committed: the next owner sends it.
                    _ = cancel.cancelled() => break 'batches,
                    _ = tokio::time::sleep_until(until) => break,
                    rec = sub.next() => batch.push(rec?),
                }
            }
            if !self.deliver(&batch, &cancel).await {
                break;
            }
            for rec in &batch {
                sub.commit(rec)?;
            }
            // Committed while the group is (most likely) stable, not only at the next
            // periodic commit or at shutdown, when a peer leaving may refuse it: an
            // accepted batch is then not posted again by the next owner.
            sub.commit_soon()?;
        }
        lag.abort();
        sub.flush_commits().await?;
        Ok(())
    }

    /// Posts one batch until it is accepted; false when cancelled first.
    async fn deliver(&self, batch: &[LogRecord], cancel: &CancellationToken) -> bool {
        let events: Vec<serde_json::Value> = batch
            .iter()
            .filter_map(|rec| {
                let e = handoff::decode(rec);
                if e.is_none() {
                    tracing::warn!(
                        partition = rec.partition,
                        offset = rec.offset,
                        "undecodable offline record skipped"
                    );
                }
                e.as_ref().map(handoff::json)
            })
            .collect();
        if events.is_empty() {
            return true;
        }
        let n = events.len() as u64;
        let body = serde_json::json!({ "events": events }).to_string();
        let initial = Duration::from_millis(self.cfg.retry_initial_ms);
        let max = Duration::from_millis(self.cfg.retry_max_ms);
        let mut attempt = 0u32;
        loop {
            let post = self.post(body.clone());
            tokio::pin!(post);
            let posted = tokio::select! {
                posted = &mut post => posted,
                _ = cancel.cancelled() => {
                    // A request already sent usually has its answer on the way: it gets
                    // a moment to arrive, so an accepted batch is committed rather than
                    // posted again by the next owner. Past that it is abandoned, not
                    // held to its timeout: the batch is not committed, the next owner
                    // posts it again (the idempotency keys make that harmless), and the
                    // drain keeps its deadline.
                    // (A refusal then is retried no more: the backoff below ends at once.)
                    match tokio::time::timeout(ANSWER_ON_SHUTDOWN, post).await {
                        Ok(posted) => posted,
                        Err(_) => return false,
                    }
                }
            };
            match posted {
                Ok(()) => {
                    metrics::counter!("ferry_offline_events_forwarded_total").increment(n);
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    metrics::counter!("ferry_offline_events_failed_total").increment(n);
                    let delay = backoff::exponential(initial, max, attempt);
                    tracing::warn!(error = %e, attempt, events = n, retry_in_ms = delay.as_millis() as u64, "offline events not accepted; retrying");
                    if !backoff::wait(cancel, delay).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn post(&self, body: String) -> Result<(), PostError> {
        let mut req = self
            .http
            .post(&self.url)
            .timeout(Duration::from_millis(self.cfg.timeout_ms))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.cfg.bearer_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(PostError::Status(resp.status()))
        }
    }
}

/// Samples the forwarder group's lag (records on the offline topic not yet
/// committed, all partitions) until cancelled.
async fn sample_lag(log: Arc<dyn MsgLog>, group: String, topic: String, cancel: CancellationToken) {
    loop {
        match super::lag::lag(log.as_ref(), &group, &topic).await {
            Ok(parts) => {
                let total: i64 = parts.iter().map(|p| p.lag).sum();
                metrics::gauge!("ferry_offline_forwarder_lag").set(total as f64);
            }
            Err(e) => tracing::debug!(error = %e, "forwarder lag sample failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
    }
}
