//! SyncMsgList's reads, bounded before they are made: the partitions one request may
//! touch are counted before the first read, the request takes the worst case of its
//! answer from the answer budget (`connections::budget`) before the store is asked,
//! reads piece by piece within it (giving back what turned out smaller), and reading
//! stops as soon as the answer passes `limits.max_response_bytes`. A request for 1,000
//! large messages reads at most the answer's limit and one piece more, not all of
//! them; 1,000 seqs in 1,000 buckets are refused before any read.

use std::collections::HashSet;

use prost::Message as _;

use super::dispatch::ConnCtx;
use super::wire::Failure;
use crate::connections::budget::Held;
use crate::domain::{ConvId, Message, Seq};
use crate::proto::pb;
use crate::store::scylla::BUCKET_SIZE;

/// Seqs read from the store at once, at most.
const READ_CHUNK: usize = 50;

/// What a stored message's encoding adds to the frame it came in: the stamps the
/// sequencer writes (serverMsgId, seq, serverTime, senderId).
const STAMPS_BYTES: usize = 1024;

/// The largest a stored message can be: it came in one frame.
pub(crate) fn message_bound(limits: &crate::config::Limits) -> usize {
    limits.max_frame_bytes + STAMPS_BYTES
}

/// One conversation's visible seqs, in the order asked, each once.
pub(crate) struct Wanted {
    pub(crate) conv: ConvId,
    pub(crate) seqs: Vec<u64>,
}

/// Counts the store partitions (conversation, seq bucket) `wanted` spans; a request
/// over `max` is refused before anything is read.
pub(crate) fn check_partitions(wanted: &[Wanted], max: usize) -> Result<(), Failure> {
    let mut partitions: HashSet<(usize, u64)> = HashSet::new();
    for (i, w) in wanted.iter().enumerate() {
        for s in &w.seqs {
            partitions.insert((i, s / BUCKET_SIZE));
            if partitions.len() > max {
                return Err(Failure::Request(format!(
                    "the seqs asked for span more than {max} store partitions \
                     ({BUCKET_SIZE} seqs of one conversation each); ask for them in several requests"
                )));
            }
        }
    }
    Ok(())
}

/// Reads `wanted` piece by piece; the messages (placeholders for missing seqs) and
/// the answer budget they hold.
pub(crate) async fn read(
    ctx: &ConnCtx,
    wanted: Vec<Wanted>,
) -> Result<(Vec<Message>, Held), Failure> {
    let limits = &ctx.app.cfg.limits;
    let answer_max = limits.max_response_bytes;
    let per_msg = message_bound(limits);
    let store = ctx.app.store.as_ref();
    // The worst case of what is left: every seq a message of the largest size, but
    // never more than the answer's room and the one message that would pass it.
    let worst = |left: usize, used: usize| {
        left.saturating_mul(per_msg)
            .min(answer_max.saturating_sub(used) + per_msg)
    };
    let mut left: usize = wanted.iter().map(|w| w.seqs.len()).sum();
    // Taken once, before the first read, and only given back from then on: a request
    // never waits for more while it holds some (no two wait on each other).
    let mut held = ctx.budget.take(worst(left, 0)).await?;
    let mut used = 0usize;
    let mut out = Vec::new();
    for w in wanted {
        let conv_s = w.conv.to_string();
        let mut rest = &w.seqs[..];
        while !rest.is_empty() {
            // Within what is held: at most the answer's room plus one message.
            let room = answer_max.saturating_sub(used) + per_msg;
            let n = (room / per_msg).clamp(1, READ_CHUNK).min(rest.len());
            let (piece, next) = rest.split_at(n);
            rest = next;
            left -= n;
            let mut found = store.messages(&conv_s, piece).await?.into_iter().peekable();
            for s in piece {
                // The store answers in the order asked, missing seqs left out.
                let m = match found.next_if(|m| m.seq == *s) {
                    Some(m) => m,
                    None => Message::placeholder(&w.conv, Seq(*s)),
                };
                used += pb::MsgData::from(&m).encoded_len();
                if used > answer_max {
                    return Err(Failure::Request(format!(
                        "the messages asked for exceed {answer_max} bytes; ask for fewer seqs at a time"
                    )));
                }
                out.push(m);
            }
            // What the answer holds, and the worst case of what is left to read.
            held.shrink_to(used + worst(left, used));
        }
    }
    Ok((out, held))
}
