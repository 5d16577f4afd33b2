//! The delay-tier role on its own, for the delay-tier bench (benches/delay_tier.rs,
//! through `testkit`): topic names, records and the role, without the rest of ferry.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::delay::DelayRole;
use super::records;
use crate::domain::{ConvId, Message};
use crate::msglog::{MsgLog, Outgoing, Topics};

/// The inbound topic and the tier topics of `tiers` under `prefix`.
pub fn topics(prefix: &str, tiers: &[u64]) -> (String, Vec<String>) {
    let t = Topics::new(prefix);
    (t.inbound(), tiers.iter().map(|s| t.delay(*s)).collect())
}

/// A delayed batch of one message to single conversation `conv` (e.g.
/// `single:a-b`, from `a`), in tier `tier`, entered at `entered_ms`, due at `due_ms`.
pub fn record(prefix: &str, tier: u64, conv: &str, due_ms: i64, entered_ms: i64) -> Outgoing {
    let conv = ConvId::parse(conv).expect("a valid convId");
    let sender = conv.to_string();
    let sender = sender
        .trim_start_matches("single:")
        .split('-')
        .next()
        .unwrap_or_default()
        .to_owned();
    let msg = Message {
        conv_id: conv.to_string(),
        sender_id: sender.clone(),
        content: b"delayed".to_vec().into(),
        ..Message::default()
    };
    let batch = records::batch(&conv, &sender, &[msg], entered_ms, due_ms);
    records::delayed(&Topics::new(prefix), tier, batch, entered_ms)
}

/// The delay role on `log`, running until `cancel`.
pub fn run(
    log: Arc<dyn MsgLog>,
    prefix: &str,
    tiers: Vec<u64>,
    cancel: CancellationToken,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    DelayRole {
        log,
        topics: Topics::new(prefix),
        tiers,
    }
    .run(cancel)
}
