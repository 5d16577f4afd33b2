//! The forwarder role (optional): consumes `<prefix>offline` in its own consumer
//! group and POSTs the events in batches, bounded in bytes as sent
//! (`offline_batch.rs`), to the app's push service, which holds the device tokens. A
//! batch is retried with exponential backoff until the endpoint answers 2xx, and
//! only then are its offsets committed: at least once. A batch refused for what it
//! holds (a 4xx such as 413 or 400) is posted event by event, and an event refused
//! `max_refusals` times on its own, or too large to post at all, goes to
//! `<prefix>offline.dead-letter` (metric, log; `ferry offline dead` lists them,
//! `ferry offline redrive` posts them again) so it never blocks other users' events.
//! Each event carries its idempotency key (`handoff.rs`), so the endpoint drops the
//! duplicates a retry or a restart may cause.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::offline_batch::{Added, Batch, body, refuses_content};
use super::records;
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
    /// The largest record the log takes (`budget.rs`), for dead letters.
    pub(crate) max_record: usize,
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
        // A record that did not fit the previous batch: the next one starts with it.
        let mut carry: Option<LogRecord> = None;
        'batches: loop {
            let first = match carry.take() {
                Some(rec) => rec,
                None => tokio::select! {
                    _ = cancel.cancelled() => break,
                    rec = sub.next() => rec?,
                },
            };
            let mut batch = Batch::new(self.cfg.max_body_bytes, self.cfg.batch_max);
            if !self.add(&mut batch, first, &mut carry, &cancel).await {
                break;
            }
            let until = tokio::time::Instant::now() + wait;
            while carry.is_none() && !batch.is_full() {
                tokio::select! {
                    // An unsent batch is not committed: the next owner sends it.
                    _ = cancel.cancelled() => break 'batches,
                    _ = tokio::time::sleep_until(until) => break,
                    rec = sub.next() => {
                        if !self.add(&mut batch, rec?, &mut carry, &cancel).await {
                            break 'batches;
                        }
                    }
                }
            }
            if !self.deliver(&batch, &cancel).await {
                break;
            }
            for rec in &batch.records {
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

    /// Adds `rec` to `batch`, or leaves it in `carry` for the next batch, or sets it
    /// aside when it cannot be sent even alone; false when cancelled first.
    async fn add(
        &self,
        batch: &mut Batch,
        rec: LogRecord,
        carry: &mut Option<LogRecord>,
        cancel: &CancellationToken,
    ) -> bool {
        match batch.add(rec) {
            Added::Yes => true,
            Added::Full(rec) => {
                *carry = Some(rec);
                true
            }
            Added::TooLarge(rec, n) => {
                let why = format!(
                    "event of {n} bytes as JSON is over offline.forwarder.max_body_bytes ({})",
                    self.cfg.max_body_bytes
                );
                let set_aside = self.dead_letter(&rec, &why, cancel).await;
                batch.skip(rec);
                set_aside
            }
        }
    }

    /// Posts one batch until it is accepted; events the push service refuses for what
    /// they hold (`refuses_content`) are posted on their own, and one refused
    /// `max_refusals` times alone is set aside. False when cancelled first.
    async fn deliver(&self, batch: &Batch, cancel: &CancellationToken) -> bool {
        if batch.events.is_empty() {
            return true;
        }
        let all: Vec<&(usize, String)> = batch.events.iter().collect();
        match self.post_until(&all, cancel).await {
            Posted::Accepted => return true,
            Posted::Cancelled => return false,
            Posted::Refused(_) if all.len() > 1 => {}
            Posted::Refused(status) => return self.refused(batch, all[0], status, cancel).await,
        }
        // One event may be what the service refuses: each on its own, so that the
        // others go through.
        for e in all {
            match self.post_until(&[e], cancel).await {
                Posted::Accepted => {}
                Posted::Cancelled => return false,
                Posted::Refused(status) => {
                    if !self.refused(batch, e, status, cancel).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn refused(
        &self,
        batch: &Batch,
        event: &(usize, String),
        status: reqwest::StatusCode,
        cancel: &CancellationToken,
    ) -> bool {
        let why = format!(
            "the push service refused it {} times: {status}",
            self.cfg.max_refusals
        );
        self.dead_letter(&batch.records[event.0], &why, cancel)
            .await
    }

    /// Posts `events` as one body until accepted, retrying failures that can heal
    /// (5xx, timeouts, 408, 429, 401/403/404) with backoff for as long as they last,
    /// and a refusal of the content up to `max_refusals` times.
    async fn post_until(&self, events: &[&(usize, String)], cancel: &CancellationToken) -> Posted {
        let n = events.len() as u64;
        let body = body(events.iter().map(|(_, e)| e.as_str()));
        let initial = Duration::from_millis(self.cfg.retry_initial_ms);
        let max = Duration::from_millis(self.cfg.retry_max_ms);
        let (mut attempt, mut refusals) = (0u32, 0u32);
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
                        Err(_) => return Posted::Cancelled,
                    }
                }
            };
            match posted {
                Ok(()) => {
                    metrics::counter!("ferry_offline_events_forwarded_total").increment(n);
                    return Posted::Accepted;
                }
                Err(e) => {
                    attempt += 1;
                    metrics::counter!("ferry_offline_events_failed_total").increment(n);
                    if let PostError::Status(s) = &e
                        && refuses_content(*s)
                    {
                        refusals += 1;
                        if refusals >= self.cfg.max_refusals {
                            tracing::warn!(error = %e, refusals, events = n, "offline events refused");
                            return Posted::Refused(*s);
                        }
                    }
                    let delay = backoff::exponential(initial, max, attempt);
                    tracing::warn!(error = %e, attempt, events = n, retry_in_ms = delay.as_millis() as u64, "offline events not accepted; retrying");
                    if !backoff::wait(cancel, delay).await {
                        return Posted::Cancelled;
                    }
                }
            }
        }
    }

    /// Sets an offline record aside on the offline dead-letter topic (`ferry offline
    /// dead`, `ferry offline redrive`), retrying the append until it is made; false
    /// when cancelled first (the record is not committed then: posted again later).
    async fn dead_letter(&self, rec: &LogRecord, why: &str, cancel: &CancellationToken) -> bool {
        let o =
            records::dead_letter_to(self.topics.offline_dead_letter(), rec, why, self.max_record);
        let mut attempt = 0u32;
        loop {
            match self.log.append(vec![o.clone()]).await {
                Ok(()) => {
                    metrics::counter!("ferry_offline_dead_letters_total").increment(1);
                    tracing::error!(
                        partition = rec.partition,
                        offset = rec.offset,
                        why,
                        "offline event sent to the offline dead-letter topic"
                    );
                    return true;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "offline dead-letter append failed; retrying");
                    let delay = backoff::exponential(
                        Duration::from_millis(self.cfg.retry_initial_ms),
                        Duration::from_millis(self.cfg.retry_max_ms),
                        attempt,
                    );
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

/// How posting a body ended.
enum Posted {
    Accepted,
    /// Refused for what it holds, `max_refusals` times.
    Refused(reqwest::StatusCode),
    Cancelled,
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
