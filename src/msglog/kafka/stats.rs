//! librdkafka's own request counters, in /metrics. Off unless `statistics.interval.ms`
//! is set in `[kafka.properties]`: librdkafka then emits its statistics every interval
//! and each client adds what it sent since the last emission to
//!
//! - `ferry_kafka_requests_total{role, request}`: requests sent to the brokers, by
//!   Kafka request type (`Produce`, `Fetch`, `Heartbeat`, `OffsetCommit`, …);
//! - `ferry_kafka_broker_wakeups_total{role}`: wake-ups of librdkafka's broker threads.
//!
//! `role` is `producer`, a consumer group's name or a reader's topic (prefix removed),
//! so the label set is bounded by the configured topics however many readers come and
//! go. These are what one message costs the brokers, read per message by ferry-bench
//! (BENCHMARKS.md, "Requests per message").

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::Statistics;

/// Turns each client's cumulative totals into increments of the shared counters.
pub(crate) struct Counts {
    role: String,
    /// The totals already added: request type → count, and the wake-ups.
    seen: Mutex<(HashMap<String, u64>, u64)>,
}

impl Counts {
    pub(crate) fn new(role: &str) -> Self {
        Self {
            role: role.to_owned(),
            seen: Mutex::new((HashMap::new(), 0)),
        }
    }

    pub(crate) fn add(&self, s: &Statistics) {
        let (reqs, wakeups) = self.fresh(s);
        for (req, n) in reqs {
            metrics::counter!(
                "ferry_kafka_requests_total",
                "role" => self.role.clone(),
                "request" => req
            )
            .increment(n);
        }
        if wakeups > 0 {
            metrics::counter!("ferry_kafka_broker_wakeups_total", "role" => self.role.clone())
                .increment(wakeups);
        }
    }

    /// What `s` adds to the totals already seen: requests by type, and wake-ups.
    fn fresh(&self, s: &Statistics) -> (Vec<(String, u64)>, u64) {
        let mut now: HashMap<&str, u64> = HashMap::new();
        let mut wakeups = 0;
        for b in s.brokers.values() {
            for (req, n) in &b.req {
                *now.entry(req.as_str()).or_default() += u64::try_from(*n).unwrap_or(0);
            }
            wakeups += b.wakeups.unwrap_or(0);
        }
        let mut seen = self.seen.lock().unwrap();
        let mut reqs = Vec::new();
        for (req, n) in now {
            let before = seen.0.entry(req.to_owned()).or_default();
            if n > *before {
                reqs.push((req.to_owned(), n - *before));
                *before = n;
            }
        }
        let woke = wakeups.saturating_sub(seen.1);
        seen.1 = seen.1.max(wakeups);
        reqs.sort();
        (reqs, woke)
    }
}

/// The producer's context: counts, nothing else.
pub(crate) struct Counted(pub(crate) Counts);

impl rdkafka::ClientContext for Counted {
    fn stats(&self, s: Statistics) {
        self.0.add(&s);
    }
}

/// A name without the deployment's topic prefix, for the `role` label.
pub(crate) fn role<'a>(prefix: &str, name: &'a str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(produce: i64, wakeups: u64) -> Statistics {
        let json = format!(
            r#"{{"name":"p","client_id":"c","type":"producer","ts":0,"time":0,"age":0,
            "replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"tx":0,
            "tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,
            "rxmsg_bytes":0,"simple_cnt":0,"metadata_cache_cnt":0,"brokers":{{"b":{{
            "name":"b","nodeid":1,"nodename":"b","source":"learned","state":"UP",
            "stateage":0,"outbuf_cnt":0,"outbuf_msg_cnt":0,"waitresp_cnt":0,
            "waitresp_msg_cnt":0,"tx":0,"txbytes":0,"txerrs":0,"txretries":0,"txidle":0,
            "req_timeouts":0,"rx":0,"rxbytes":0,"rxerrs":0,"rxcorriderrs":0,
            "rxpartial":0,"rxidle":0,"zbuf_grow":0,"buf_grow":0,"wakeups":{wakeups},
            "connects":0,"disconnects":0,"toppars":{{}},"req":{{"Produce":{produce},"Fetch":0}}}}}},
            "topics":{{}}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn cumulative_totals_become_increments_once() {
        let c = Counts::new("producer");
        assert_eq!(c.fresh(&stats(5, 7)), (vec![("Produce".to_owned(), 5)], 7));
        assert_eq!(c.fresh(&stats(5, 7)), (vec![], 0));
        assert_eq!(c.fresh(&stats(12, 9)), (vec![("Produce".to_owned(), 7)], 2));
    }
}
