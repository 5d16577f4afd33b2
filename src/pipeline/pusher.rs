//! The pusher role: consumes this pod's own push topic and delivers to local sockets
//! in the order the records arrive (seq order per conversation).

use std::sync::Arc;

use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::connections::frames;
use crate::connections::registry::Registry;
use crate::msglog::{MsgLog, Topics};
use crate::proto::pb::PushEvent;
use crate::proto::records::{PushRecord, push_record::Payload};

pub(crate) struct Pusher {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) pod: String,
    pub(crate) registry: Arc<Registry>,
}

impl Pusher {
    pub(crate) async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let topic = self.topics.push(&self.pod);
        let mut sub = self
            .log
            .subscribe(
                &self.topics.group(&format!("pusher.{}", self.pod)),
                &[topic],
            )
            .await?;
        loop {
            let rec = tokio::select! {
                _ = cancel.cancelled() => break,
                rec = sub.next() => rec?,
            };
            metrics::counter!("ferry_push_records_total").increment(1);
            match rec.value.as_deref().map(PushRecord::decode) {
                Some(Ok(mut p)) => {
                    // A coalesced record (`PushRouter::coalesce`): its own payload (if
                    // any), then each item in order, each under its own trace.
                    let items = std::mem::take(&mut p.items);
                    self.deliver_traced(p, &rec.headers);
                    for mut item in items {
                        let headers: Vec<(String, bytes::Bytes)> =
                            std::mem::take(&mut item.trace).into_iter().collect();
                        self.deliver_traced(item, &headers);
                    }
                }
                _ => tracing::warn!(offset = rec.offset, "undecodable push record skipped"),
            }
            sub.commit(&rec)?;
        }
        sub.flush_commits().await?;
        Ok(())
    }

    fn deliver_traced(&self, p: PushRecord, headers: &[(String, bytes::Bytes)]) {
        if p.payload.is_none() {
            return;
        }
        let span = tracing::info_span!(
            "push.deliver",
            otel.name = "push deliver",
            users = p.user_ids.len(),
            sockets = tracing::field::Empty
        );
        crate::telemetry::follow(&span, headers);
        span.in_scope(|| self.deliver(p));
    }

    fn deliver(&self, p: PushRecord) {
        let frame = match p.payload {
            Some(Payload::Msgs(m)) => frames::push(PushEvent::PushMsgDataList, m.encode_to_vec()),
            Some(Payload::Notices(n)) => {
                frames::push(PushEvent::PushNoticeDataList, n.encode_to_vec())
            }
            Some(Payload::Disconnect(d)) => {
                for user in &p.user_ids {
                    for c in self.registry.conns(user) {
                        let matches = (d.platform.is_empty() || c.platform == d.platform)
                            && (d.device_id.is_empty() || c.device_id == d.device_id)
                            && c.conn_id != d.except_conn_id;
                        if matches {
                            c.closer.close(d.close_code as u16, &d.reason);
                        }
                    }
                }
                return;
            }
            None => return,
        };
        // A span per recipient only when spans are exported; otherwise the whole
        // record is queued under one registry lock.
        let sockets = if crate::telemetry::exporting() {
            let mut sockets = 0;
            for user in &p.user_ids {
                let _socket =
                    tracing::info_span!("push.socket", otel.name = "push socket", user = %user)
                        .entered();
                sockets += self.registry.deliver(user, &frame);
            }
            sockets
        } else {
            self.registry.deliver_all(&p.user_ids, &frame)
        };
        // One counter update per record, not per recipient (a metrics lookup each).
        metrics::counter!("ferry_pushes_delivered_total").increment(sockets as u64);
        tracing::Span::current().record("sockets", sockets);
    }
}
