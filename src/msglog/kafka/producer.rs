//! The producer side of the Kafka log: `append`, and `enqueue` for callers that keep
//! many appends in flight (SendMsgList pipelines a connection's requests).

use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::time::Instant;

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
                    Err((e, _)) => return Err(unavailable(e)),
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
                    Ok(Err((e, _))) => return Err(unavailable(e)),
                    // The producer dropped the delivery report: it is shutting down.
                    Err(_) => return Err(LogError::Closed),
                }
            }
            Ok(())
        }))
    }
}
