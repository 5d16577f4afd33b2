//! The flood scenario's victim: one well-behaved user, closed loop (each request waits
//! for its answer), alternating a SendMsgList of one message and a SyncMsgList of ten
//! stored messages, paced under the per-connection rate limit as a real client is.

use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message as _;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::call;
use crate::conn::{self, Ws};
use crate::hist;
use crate::job::{Client, Target};
use crate::pb::gateway as pb;

/// Messages the victim's conversation holds before measuring; each sync asks for them.
const SYNCED: u64 = 10;

pub struct Victim {
    ws: Ws,
    user: String,
    conv: String,
    sent: u64,
}

/// What one measured phase of the victim saw.
pub struct Phase {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub samples: Vec<String>,
}

impl Victim {
    pub async fn connect(server: &str, user: &str, secret: &str) -> anyhow::Result<Self> {
        let c = Client {
            user: user.to_owned(),
            server: server.to_owned(),
            subscribe: None,
            send: None,
            record_pushes: false,
            stalled: false,
            sync: None,
        };
        let ws = tokio::time::timeout(
            conn::HANDSHAKE_TIMEOUT,
            conn::open(Target::Ferry, &c, "127.0.0.2", secret),
        )
        .await
        .map_err(|_| anyhow::anyhow!("victim: connect timed out"))??;
        let mut v = Self {
            ws,
            user: user.to_owned(),
            conv: format!("single:{user}-{user}peer"),
            sent: 0,
        };
        for _ in 0..SYNCED {
            v.send()
                .await
                .map_err(|e| anyhow::anyhow!("victim seed: {e}"))?;
        }
        Ok(v)
    }

    async fn send(&mut self) -> Result<(), String> {
        self.sent += 1;
        let id = format!("victim-{}", self.sent);
        let data = pb::SendMsgListReq {
            msg_data_list: vec![crate::pb::text_msg(
                id.clone(),
                &self.user,
                &self.conv,
                Bytes::from_static(&[b'v'; 100]),
                conn::now_ns() / 1_000_000,
            )],
            ..Default::default()
        }
        .encode_to_vec();
        call(&mut self.ws, pb::ActiveEvent::SendMsgList, &id, data)
            .await
            .map(|_| ())
    }

    async fn sync(&mut self) -> Result<(), String> {
        let data = pb::BatchGetMsgListByConvIdReq {
            items: vec![pb::batch_get_msg_list_by_conv_id_req::Item {
                conv_id: self.conv.clone(),
                seq_list: (1..=SYNCED).map(|s| s.to_string()).collect(),
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let resp = call(&mut self.ws, pb::ActiveEvent::SyncMsgList, "sync", data).await?;
        let list = pb::GetMsgListResp::decode(resp).map_err(|e| e.to_string())?;
        let n = list.msg_data_list.len() as u64;
        if n != SYNCED {
            return Err(format!("sync returned {n} of {SYNCED} messages"));
        }
        Ok(())
    }

    /// `n` requests at `rate` per second, each timed from when it was sent until its
    /// answer arrived.
    pub async fn measure(&mut self, n: u64, rate: f64) -> Phase {
        let mut p = Phase {
            latency: hist::new(),
            ok: 0,
            errors: 0,
            samples: Vec::new(),
        };
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
        // A slow answer delays the next request instead of bunching up those after it.
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for i in 0..n {
            pace.tick().await;
            let t = Instant::now();
            let r = if i % 2 == 0 {
                self.send().await
            } else {
                self.sync().await
            };
            match r {
                Ok(()) => {
                    p.ok += 1;
                    hist::record(&mut p.latency, t.elapsed().as_micros() as u64);
                }
                Err(e) => {
                    p.errors += 1;
                    if p.samples.len() < 5 {
                        p.samples.push(format!("victim: {e}"));
                    }
                }
            }
        }
        p
    }
}
