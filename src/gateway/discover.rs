//! DiscoverConvs (event 101, a ferry extension): the conversations the caller belongs
//! to that changed after a cursor, paged (docs/conversation-discovery.md). Reads the
//! caller's conversation index (`store::convs`), each group's seq row, and the
//! horizon below which every record is applied: the sequencer's applied mark
//! (`pipeline::sequencer::applied`), or its committed offsets where they are higher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use prost::Message as _;

use super::discover_page::{Candidate, Cursor, page};
use super::dispatch::{ConnCtx, Reply, decode};
use super::wire::Failure;
use crate::msglog::{LogError, MsgLog, Topics};
use crate::pipeline::sequencer::applied::APPLIED_GROUP;
use crate::proto::pb;
use crate::proto::pb::discover_convs_resp::Conv;
use crate::store::convs::ConvEntry;
use crate::store::{Store, StoreError};

/// How long a horizon read is reused: a reconnect storm costs one committed-offsets
/// query (of two groups) per this interval per pod, not one per request. A change becomes
/// discoverable this much later at most (it is pushed live meanwhile).
const HORIZON_TTL: Duration = Duration::from_millis(200);
/// Group seq rows read at once for one answer.
const GROUP_READS: usize = 32;

/// The horizon, cached for `HORIZON_TTL`; one read at a time (the lock is held
/// across it, so concurrent requests wait for it instead of all asking).
#[derive(Default)]
pub(crate) struct Horizon {
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Vec<i64>>)>>,
}

impl Horizon {
    /// Per inbound partition (indexed by partition), the offset below which every
    /// record is applied (0 where nothing is committed yet).
    async fn get(&self, log: &dyn MsgLog, topics: &Topics) -> Result<Arc<Vec<i64>>, LogError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, h)) = cached.as_ref()
            && at.elapsed() < HORIZON_TTL
        {
            return Ok(h.clone());
        }
        // The sequencer commits a durability horizon behind what it applied; the
        // applied mark says what is applied (`sequencer::applied`).
        let inbound = topics.inbound();
        let (sequencer, mark) = (topics.group("sequencer"), topics.group(APPLIED_GROUP));
        let (committed, applied) = futures_util::try_join!(
            log.committed(&sequencer, &inbound),
            log.committed(&mark, &inbound),
        )?;
        let n = committed
            .iter()
            .chain(&applied)
            .map(|(p, _)| *p as usize + 1)
            .max()
            .unwrap_or(0);
        let mut h = vec![0i64; n];
        for (p, o) in committed.into_iter().chain(applied) {
            h[p as usize] = h[p as usize].max(o.unwrap_or(0));
        }
        let h = Arc::new(h);
        *cached = Some((Instant::now(), h.clone()));
        Ok(h)
    }
}

pub(crate) async fn discover_convs(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::DiscoverConvsReq = decode(data, "DiscoverConvsReq")?;
    let max = ctx.app.cfg.limits.max_convs_per_discovery;
    let limit = match usize::try_from(req.limit) {
        Ok(0) => max,
        Ok(n) if n <= max => n,
        _ => return Err(Failure::Request(format!("limit must be 0..={max}"))),
    };
    if req.cursor.len() > super::discover_page::MAX_CURSOR_BYTES {
        return Err(Failure::Request(format!(
            "invalid cursor: longer than {} bytes",
            super::discover_page::MAX_CURSOR_BYTES
        )));
    }
    let app = &ctx.app;
    let horizon = app.discovery.get(app.log.as_ref(), &app.topics).await?;
    let cursor = Cursor::parse(&req.cursor, horizon.len())
        .map_err(|why| Failure::Request(format!("invalid cursor: {why}")))?;
    let candidates = candidates(app.store.as_ref(), ctx.user.as_str()).await?;
    let p = page(candidates, &cursor, &horizon, limit);
    let resp = pb::DiscoverConvsResp {
        common_resp: None,
        convs: p.listed.into_iter().map(|c| c.item).collect(),
        cursor: p.next.to_string(),
        more: p.more,
    };
    Ok(Reply::data(resp.encode_to_vec()))
}

/// Every conversation of `user` at its position, with what an answer says of it.
async fn candidates(store: &dyn Store, user: &str) -> Result<Vec<Candidate<Conv>>, StoreError> {
    let entries = store.user_convs(user).await?;
    futures_util::stream::iter(entries)
        .map(|(conv, e)| candidate(store, conv, e))
        .buffer_unordered(GROUP_READS)
        .try_collect()
        .await
}

/// A single conversation's entry says it all; a member's group is placed at the later
/// of the member change and the group's last claim (both in the group's partition),
/// with the group's max_seq; a removed member's group at the removal.
async fn candidate(
    store: &dyn Store,
    conv: String,
    e: ConvEntry,
) -> Result<Candidate<Conv>, StoreError> {
    let (mut partition, mut offset, mut max_seq, mut time) =
        (e.partition, e.offset, e.max_seq, e.update_time_ms);
    if conv.starts_with("group:")
        && !e.removed
        && let Some(s) = store.conv_state(&conv).await?
    {
        max_seq = s.max_seq;
        time = time.max(s.update_time_ms);
        if s.max_seq > 0 && (s.claim.partition, s.claim.offset) > (partition, offset) {
            (partition, offset) = (s.claim.partition, s.claim.offset);
        }
    }
    let (min_seq, max_seq) = if e.removed {
        (0, 0)
    } else {
        (e.min_seq, max_seq)
    };
    Ok(Candidate {
        partition,
        offset,
        conv: conv.clone(),
        item: Conv {
            conv_id: conv,
            min_seq: min_seq.to_string(),
            max_seq: max_seq.to_string(),
            update_time: time.to_string(),
            removed: e.removed,
        },
    })
}
