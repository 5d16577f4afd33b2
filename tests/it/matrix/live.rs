//! The check after every phase of the matrix: an ordinary 1:1 message between two
//! users who take no part in the load or the faults is answered Success and pushed
//! live to its recipient within [`LIVE_BOUND`] of being sent. Issue 25's probe asked
//! exactly this after each attack, on one pod, on two and after restarts; a pipeline
//! that a fault or one user's traffic stalled fails it even when nothing is lost.
//!
//! And the attack phase: large messages with `offlinePush` to users who are never
//! online, each as large as the size budget lets a client send (the inbound record
//! fits the broker, what the sequencer derives from it must too), several of them so
//! that both sequencer pods meet one.

use std::time::{Duration, Instant};

use prost::Message as _;

use super::{Gateways, Pods, connect_any};
use crate::proto::pb;
use crate::support::*;

/// The acceptance criterion of issue 25 ("is an ordinary 1:1 message between two
/// *other* users delivered within 5 s?"), from send to the recipient's push. This is
/// the point of the check, so the bound is asserted as it is.
pub(super) const LIVE_BOUND: Duration = Duration::from_secs(5);

/// The phases after which [`LIVE_BOUND`] is asserted: the calm, the attack and the pod
/// kills. After a broker or database outage the check measures the catch-up instead.
pub(super) const BOUNDED_AFTER: [&str; 4] = ["calm", super::ATTACK, "gateway", "sequencer"];

/// How long a check that failed keeps waiting, to report how late the push came.
const LATE_WAIT: Duration = Duration::from_secs(30);

/// How long the recipient's presence may take to reach every pod before the
/// measured send (set-up, not part of the bound: a push is routed by presence).
const PRESENCE_WAIT: Duration = Duration::from_secs(30);

/// Attack messages per attack phase: as many as stalled both pods in the probe.
pub(super) const ATTACKS: usize = 6;

/// Bytes of the attack message's content: as much as `kafka.max_message_bytes`'
/// default (1,000,000) leaves a conversation's part of a request once the budget
/// took its record envelope (`budget::ENVELOPE_BYTES`, 16 KiB) and batch framing
/// (`gateway/sizes.rs`, 1 KiB), with the offline-push fields at their caps and 1 KiB
/// for ids, stamps and tags: the largest a client may send, within a few hundred bytes.
const ATTACK_CONTENT_BYTES: usize = 1_000_000 - 16 * 1024 - 1024 - (512 + 4096 + 4096) - 1024;

const REQUEST_ERROR: i32 = pb::response_body::Code::RequestError as i32;

/// The bystanders' pair and what each check found.
pub(super) struct Live {
    from: String,
    to: String,
    conv: String,
    /// (phase, Ok(send to push) or why it failed)
    pub(super) results: Vec<(&'static str, Result<Duration, String>)>,
}

impl Live {
    pub(super) fn new(run: &str) -> Self {
        let (from, to) = (format!("{run}livea"), format!("{run}liveb"));
        let conv = format!("single:{from}-{to}");
        Self {
            from,
            to,
            conv,
            results: Vec::new(),
        }
    }

    /// One check, recorded under `phase`.
    pub(super) async fn check(&mut self, pods: &Pods, phase: &'static str) {
        let r = self.once(pods, phase).await;
        match &r {
            Ok(d) => eprintln!("matrix: live check after {phase}: pushed {d:?} after the send"),
            Err(why) if BOUNDED_AFTER.contains(&phase) => {
                eprintln!("matrix: live check after {phase} FAILED: {why}")
            }
            Err(why) => eprintln!("matrix: live check after {phase} (catch-up, measured): {why}"),
        }
        self.results.push((phase, r));
    }

    async fn once(&self, pods: &Pods, phase: &str) -> Result<Duration, String> {
        settled(pods).await?;
        // The recipient on one gateway, the sender on the other (while both are up).
        let mut to = connect_any(&pods.gateways, 0, &self.to, "web", "live").await;
        routable(pods, &self.to).await?;
        let mut from = connect_any(&pods.gateways, 1, &self.from, "ios", "live").await;
        let m = msg(&self.from, &self.conv, &format!("live after {phase}"));
        let id = m.client_msg_id.clone();
        let sent = Instant::now();
        let req = pb::SendMsgListReq {
            msg_data_list: vec![m],
            ..Default::default()
        };
        let r = from
            .try_request(
                pb::ActiveEvent::SendMsgList,
                req.encode_to_vec(),
                LIVE_BOUND,
            )
            .await
            .ok_or_else(|| format!("no answer to the send within {LIVE_BOUND:?}"))?;
        if r.code != 0 {
            return Err(format!("send answered {} {:?}", r.code, r.msg));
        }
        // Past the bound the check has failed; how late the push came (if it came
        // within LATE_WAIT) is reported with the failure.
        loop {
            let left = (LIVE_BOUND + LATE_WAIT).saturating_sub(sent.elapsed());
            if left.is_zero() {
                return Err(format!(
                    "not pushed within {:?} of the send",
                    LIVE_BOUND + LATE_WAIT
                ));
            }
            match to.next_frame(left).await {
                Frame::Closed => return Err("the recipient's socket closed".into()),
                Frame::Quiet => {}
                Frame::Push(p) if p.event == pb::PushEvent::PushMsgDataList as i32 => {
                    let list = pb::MsgDataList::decode(p.data).unwrap().msg_data_list;
                    if list.iter().any(|m| m.client_msg_id == id) {
                        let took = sent.elapsed();
                        if took > LIVE_BOUND {
                            return Err(format!("pushed {took:?} after the send"));
                        }
                        return Ok(took);
                    }
                }
                Frame::Push(_) => {}
            }
        }
    }
}

/// How long a phase may take to settle: a member killed with -9 keeps its partitions
/// until its session times out (`session.timeout.ms`, 10 s), then the group
/// rebalances in two cooperative rounds; generous on a shared machine.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// Waits until the running sequencer pods own every inbound partition between them
/// (`ferry_kafka_assigned_partitions`): the check is of a healed deployment, and a
/// sequencer killed with -9 holds its partitions for a session timeout, which no
/// ordinary message can beat. How long that took is printed.
async fn settled(pods: &Pods) -> Result<(), String> {
    let group = pods.cluster.topic("sequencer");
    let line = format!("ferry_kafka_assigned_partitions{{group=\"{group}\"}} ");
    let start = Instant::now();
    loop {
        let urls: Vec<String> = {
            let pods = pods.pods.lock().unwrap();
            pods.iter()
                .filter(|p| p.gw.is_none())
                .filter_map(|p| Some(p.ferry.as_ref()?.http("/metrics")))
                .collect()
        };
        let mut owned = 0usize;
        for url in urls {
            if let Ok(r) = reqwest::get(&url).await
                && let Ok(text) = r.text().await
            {
                owned += text
                    .lines()
                    .find_map(|l| l.strip_prefix(&line)?.trim().parse::<f64>().ok())
                    .unwrap_or(0.0) as usize;
            }
        }
        if owned == super::PARTITIONS {
            if start.elapsed() > Duration::from_secs(1) {
                eprintln!(
                    "matrix: sequencer partitions owned again after {:?}",
                    start.elapsed()
                );
            }
            return Ok(());
        }
        if start.elapsed() > SETTLE_WAIT {
            return Err(format!(
                "the sequencer pods own {owned} of {} partitions after {SETTLE_WAIT:?}",
                super::PARTITIONS
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every running gateway pod's presence view (the server API is theirs)
/// lists a pod for `user`; the sequencer pods follow the same topic.
async fn routable(pods: &Pods, user: &str) -> Result<(), String> {
    let bases: Vec<String> = {
        let pods = pods.pods.lock().unwrap();
        pods.iter()
            .filter(|p| p.gw.is_some())
            .filter_map(|p| Some(p.ferry.as_ref()?.http("")))
            .collect()
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + PRESENCE_WAIT;
    for base in bases {
        loop {
            let listed = async {
                let r = http
                    .get(format!("{base}/api/v1/users/{user}/presence"))
                    .bearer_auth(SERVICE_TOKEN)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .ok()?;
                let body: serde_json::Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
                Some(body["pods"].as_array().is_some_and(|p| !p.is_empty()))
            }
            .await;
            if listed == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{base}: presence of {user} not listed within {PRESENCE_WAIT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Text no compression shrinks much (the broker checks compressed batches).
fn noise(n: usize) -> Vec<u8> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c[(s % 64) as usize]
        })
        .collect()
}

/// What the attack phase's sends were answered: (Success, RequestError naming a limit).
#[derive(Debug, Default)]
pub(super) struct Attacked {
    pub(super) accepted: usize,
    pub(super) refused: usize,
}

/// [`ATTACKS`] messages as large as a client may send, each with offline-push fields
/// at their caps, to users who are never online: every one is answered Success or
/// refused whole with a RequestError, and no other answer.
pub(super) async fn attack(gws: &Gateways, run: &str) -> Attacked {
    let sender = format!("{run}atk");
    let mut out = Attacked::default();
    for k in 0..ATTACKS {
        let off = format!("{run}off{k}");
        let (x, y) = if sender < off {
            (&sender, &off)
        } else {
            (&off, &sender)
        };
        let mut m = msg(&sender, &format!("single:{x}-{y}"), "");
        m.content = noise(ATTACK_CONTENT_BYTES).into();
        m.options.as_mut().unwrap().offline_push = true;
        m.offline_push = Some(pb::msg_data::OfflinePush {
            title: "t".repeat(512),
            content: "c".repeat(4096),
            payload: "p".repeat(4096),
        });
        let req = pb::SendMsgListReq {
            msg_data_list: vec![m],
            ..Default::default()
        }
        .encode_to_vec();
        // A socket per send, alternately on each gateway (each recipient's chat is a
        // partition of its own, so both sequencer pods meet some).
        let mut c = connect_any(gws, k, &sender, "ios", &format!("atk{k}")).await;
        let r = c
            .try_request(pb::ActiveEvent::SendMsgList, req, Duration::from_secs(30))
            .await
            .expect("an attack send is answered");
        match r.code {
            0 => out.accepted += 1,
            REQUEST_ERROR => out.refused += 1,
            other => panic!("attack send {k} answered {other} {:?}", r.msg),
        }
    }
    out
}
