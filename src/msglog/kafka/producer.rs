//! The producer side of the Kafka log: `append`, and `enqueue` for callers that keep
//! many appends in flight (SendMsgList pipelines a connection's requests).

use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::time::Instant;

use rdkafka::error::KafkaError;

use super::{KafkaLog, code, unavailable};
use crate::msglog::{Durable, LogError, Outgoing};

/// Extra wait on top of `append_timeout` before giving up on a delivery report that
/// librdkafka should already have produced (`message.timeout.ms` = `append_timeout`).
const DELIVERY_GRACE: Duration = Duration::from_secs(1);

impl KafkaLog {
    pub(super) async fn produce(&self, records: Vec<Outgoing>) -> Result<(), LogError> {
        self.enqueue_records(records).await?.await
    }

    /// Hands the records to librdkafka in order and returns the wait for their
    /// delivery reports. Once this returns, a later call's records with the same
    /// topic and key are behind these (one producer, idempotent, per-partition
    /// order), so waiting for durability need not hold up the next append.
    pub(super) async fn enqueue_records(
        &self,
        records: Vec<Outgoing>,
    ) -> Result<Durable, LogError> {
        if records.is_empty() {
            return Ok(Box::pin(std::future::ready(Ok(()))));
        }
        let deadline = Instant::now() + self.inner.settings.append_timeout;
        // Enqueued one by one, in order: the idempotent producer keeps per-partition
        // order, so records with the same topic and key keep theirs.
        let mut deliveries = Vec::with_capacity(records.len());
        for o in &records {
            let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
            for (name, value) in &o.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_ref()),
                });
            }
            let mut rec = FutureRecord::<[u8], [u8]>::to(&o.topic)
                .key(o.key.as_ref())
                .headers(headers);
            if let Some(v) = &o.value {
                rec = rec.payload(v.as_ref());
            }
            loop {
                match self.inner.producer.send_result(rec) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((e, back)) if code(&e) == Some(RDKafkaErrorCode::QueueFull) => {
                        // Records already enqueued will still be delivered: a caller
                        // that retries after Timeout may append them twice, which the
                        // pipeline's clientMsgId idempotence absorbs.
                        if Instant::now() >= deadline {
                            return Err(LogError::Timeout);
                        }
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(failed(&o.topic, e)),
                }
            }
        }
        Ok(Box::pin(async move {
            let results = tokio::time::timeout_at(
                deadline + DELIVERY_GRACE,
                futures_util::future::join_all(deliveries),
            )
            .await
            .map_err(|_| LogError::Timeout)?;
            for (r, o) in results.into_iter().zip(&records) {
                match r {
                    Ok(Ok(d)) => {
                        tracing::debug!(topic = %o.topic, partition = d.partition, offset = d.offset, key = %String::from_utf8_lossy(&o.key), "appended");
                    }
                    Ok(Err((e, _))) if code(&e) == Some(RDKafkaErrorCode::MessageTimedOut) => {
                        return Err(LogError::Timeout);
                    }
                    Ok(Err((e, _))) => return Err(failed(&o.topic, e)),
                    // The producer dropped the delivery report: it is shutting down.
                    Err(_) => return Err(LogError::Closed),
                }
            }
            Ok(())
        }))
    }
}

/// What a refused produce means to the caller: `Rejected` when the broker (or
/// librdkafka before it) will never take this record as it is, so that a consumer
/// sets aside what produced it instead of retrying for ever; `Unavailable` otherwise.
fn failed(topic: &str, e: KafkaError) -> LogError {
    match code(&e) {
        Some(c) if permanent(c) => LogError::Rejected(format!("{topic}: {e}")),
        _ => unavailable(e),
    }
}

/// Error codes that say "this record", not "the cluster right now": too large for
/// `message.max.bytes` (librdkafka's or the topic's), refused by the broker's record
/// validation or policy. `InvalidDifferentRecord` is not one of them: another record
/// of the batch was refused, this one may go on its own.
fn permanent(c: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        c,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidMessage
            | C::BadMessage
            | C::PolicyViolation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_broker_will_never_take_are_rejected_not_unavailable() {
        for c in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::MessageBatchTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::InvalidMessageSize,
        ] {
            let e = failed("t.offline", KafkaError::MessageProduction(c));
            assert!(
                matches!(&e, LogError::Rejected(m) if m.starts_with("t.offline: ")),
                "{c:?}: {e}"
            );
            assert!(!e.can_heal());
        }
        for c in [
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::InvalidDifferentRecord,
            RDKafkaErrorCode::BrokerNotAvailable,
        ] {
            let e = failed("t.offline", KafkaError::MessageProduction(c));
            assert!(e.can_heal(), "{c:?}: {e}");
        }
    }
}
