//! `ferry client`: a small protocol client that speaks the real wire format, for the
//! walkthrough and for operators debugging a deployment.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::config::Config;
use crate::domain::{Message, now_ms};
use crate::proto::pb::{self, ActiveEvent, PushEvent};

#[derive(clap::Subcommand)]
pub(crate) enum ClientCommand {
    /// Connect as a user and print every push and notice as a JSON line.
    Listen {
        user_id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Send one text message and print the response.
    Send {
        user_id: String,
        /// single:<a>-<b> or group:<id>
        conv_id: String,
        text: String,
        /// Deliver after this many seconds.
        #[arg(long)]
        deliver_after: Option<i32>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print the user's conversations that changed after a cursor (all of them
    /// without one), one JSON line each, then the next cursor as the last line.
    Convs {
        user_id: String,
        /// The cursor printed by a previous `convs`.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print a conversation's seqs and its messages.
    Sync {
        user_id: String,
        conv_id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(clap::Args)]
pub(crate) struct ConnArgs {
    /// Base WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Token to use; default: minted from the local configuration.
    #[arg(long, env = "FERRY_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value = "cli")]
    platform: String,
    /// Device id; default: a fresh one per invocation, so a `listen` in one terminal
    /// is not replaced ("duplicate connection") by a `send` or `sync` in another.
    #[arg(long)]
    device_id: Option<String>,
}

impl ConnArgs {
    fn device_id(&self) -> String {
        self.device_id
            .clone()
            .unwrap_or_else(|| format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(cfg: &Config, user: &str, c: &ConnArgs) -> anyhow::Result<Ws> {
    let token = match &c.token {
        Some(t) => t.clone(),
        None => crate::gateway::auth::mint(
            &cfg.auth,
            crate::secrets::auth_dev_secret(cfg)?.as_deref(),
            user,
            3600,
            &[],
        )?,
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", &token)
        .append_pair("userId", user)
        .append_pair("platform", &c.platform)
        .append_pair("deviceId", &c.device_id())
        .finish();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?{q}", c.url))
        .await
        .with_context(|| format!("connecting to {}", c.url))?;
    match ws.next().await {
        Some(Ok(WsMessage::Text(t))) if t.as_str() == "connected" => Ok(ws),
        Some(Ok(WsMessage::Close(Some(f)))) => {
            anyhow::bail!("refused: {} {}", u16::from(f.code), f.reason)
        }
        other => anyhow::bail!("unexpected first frame: {other:?}"),
    }
}

fn msg_json(m: &pb::MsgData) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = String::from_utf8(m.content.to_vec()).unwrap_or_else(|_| b64.encode(&m.content));
    serde_json::json!({
        "convId": m.conv_id, "seq": m.seq, "serverMsgId": m.server_msg_id, "clientMsgId": m.client_msg_id,
        "senderId": m.sender_id, "contentType": m.content_type, "content": text, "serverTime": m.server_time,
    })
}

fn describe(push: &pb::PushBody) -> serde_json::Value {
    match PushEvent::try_from(push.event) {
        Ok(PushEvent::PushMsgDataList) => {
            let l = pb::MsgDataList::decode(push.data.clone()).unwrap_or_default();
            serde_json::json!({ "push": "messages", "messages": l.msg_data_list.iter().map(msg_json).collect::<Vec<_>>() })
        }
        Ok(PushEvent::PushNoticeDataList) => {
            let l = pb::NoticeDataList::decode(push.data.clone()).unwrap_or_default();
            let n: Vec<_> = l.notice_data_list.iter().map(|n| serde_json::json!({ "convId": n.conv_id, "noticeId": n.notice_id, "title": n.title })).collect();
            serde_json::json!({ "push": "notices", "notices": n })
        }
        _ => {
            let r = pb::ResponseBody::decode(push.data.clone()).unwrap_or_default();
            let msg = pb::CustomResponseError::decode(r.data.clone())
                .ok()
                .and_then(|e| e.common_resp)
                .and_then(|c| c.msg);
            serde_json::json!({ "response": crate::gateway::wire::event_name(r.event), "reqId": r.req_id, "code": r.code().as_str_name(), "message": msg })
        }
    }
}

async fn request(
    ws: &mut Ws,
    event: ActiveEvent,
    data: Vec<u8>,
) -> anyhow::Result<pb::ResponseBody> {
    let (push, r) = exchange(ws, event, data).await?;
    println!("{}", describe(&push));
    Ok(r)
}

/// Sends one request and waits (at most 10 s) for its response.
async fn exchange(
    ws: &mut Ws,
    event: ActiveEvent,
    data: Vec<u8>,
) -> anyhow::Result<(pb::PushBody, pb::ResponseBody)> {
    let req_id = format!("cli-{}", now_ms());
    let body = pb::RequestBody {
        event: event as i32,
        req_id: req_id.clone(),
        data: data.into(),
    };
    ws.send(WsMessage::Binary(body.encode_to_vec().into()))
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no response within 10 s")?;
        let Some(Ok(WsMessage::Binary(b))) = frame else {
            continue;
        };
        let push = pb::PushBody::decode(b)?;
        if push.event == PushEvent::PushResponseBody as i32 {
            let r = pb::ResponseBody::decode(push.data.clone())?;
            if r.req_id == req_id {
                return Ok((push, r));
            }
        }
    }
}

pub(crate) async fn run(cmd: ClientCommand, cfg: &Config) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Listen { user_id, conn } => {
            let mut ws = connect(cfg, &user_id, &conn).await?;
            eprintln!("connected as {user_id}; waiting for pushes (Ctrl-C to stop)");
            while let Some(frame) = ws.next().await {
                match frame? {
                    WsMessage::Binary(b) => println!("{}", describe(&pb::PushBody::decode(b)?)),
                    WsMessage::Close(f) => {
                        eprintln!("closed: {f:?}");
                        break;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        ClientCommand::Send {
            user_id,
            conv_id,
            text,
            deliver_after,
            conn,
        } => {
            let mut ws = connect(cfg, &user_id, &conn).await?;
            let m = Message {
                client_msg_id: uuid::Uuid::new_v4().simple().to_string(),
                client_time_ms: now_ms(),
                sender_id: user_id.clone(),
                conv_id,
                content_type: 11,
                content: text.into_bytes().into(),
                options: crate::domain::MsgOptions::stored(),
                ..Message::default()
            };
            let req = pb::SendMsgListReq {
                msg_data_list: vec![pb::MsgData::from(&m)],
                deliver_after,
                ..Default::default()
            };
            let r = request(&mut ws, ActiveEvent::SendMsgList, req.encode_to_vec()).await?;
            anyhow::ensure!(r.code == 0, "send failed");
            Ok(())
        }
        ClientCommand::Convs {
            user_id,
            since,
            conn,
        } => {
            let mut ws = connect(cfg, &user_id, &conn).await?;
            convs(&mut ws, since.unwrap_or_default()).await
        }
        ClientCommand::Sync {
            user_id,
            conv_id,
            conn,
        } => {
            let mut ws = connect(cfg, &user_id, &conn).await?;
            let req = pb::BatchGetConvSeqReq {
                conv_id_list: vec![conv_id.clone()],
                ..Default::default()
            };
            let r = request(&mut ws, ActiveEvent::SyncConvSeq, req.encode_to_vec()).await?;
            let seqs = pb::BatchGetConvSeqResp::decode(r.data)?;
            let Some(cs) = seqs.conv_seq_map.get(&conv_id) else {
                return Ok(());
            };
            println!(
                "{}",
                serde_json::json!({ "convId": conv_id, "minSeq": cs.min_seq, "maxSeq": cs.max_seq, "updateTime": cs.update_time })
            );
            let max: u64 = cs.max_seq.parse().unwrap_or(0);
            let min: u64 = cs.min_seq.parse::<u64>().unwrap_or(0).max(1);
            let from = max.saturating_sub(49).max(min);
            if max == 0 {
                return Ok(());
            }
            let item = pb::batch_get_msg_list_by_conv_id_req::Item {
                conv_id: conv_id.clone(),
                seq_list: (from..=max).map(|s| s.to_string()).collect(),
            };
            let req = pb::BatchGetMsgListByConvIdReq {
                items: vec![item],
                ..Default::default()
            };
            let r = request(&mut ws, ActiveEvent::SyncMsgList, req.encode_to_vec()).await?;
            for m in pb::GetMsgListResp::decode(r.data)?.msg_data_list {
                println!("{}", msg_json(&m));
            }
            Ok(())
        }
    }
}

/// Pages DiscoverConvs until nothing more is ready: one JSON line per conversation,
/// then `{"cursor": …}`.
async fn convs(ws: &mut Ws, mut cursor: String) -> anyhow::Result<()> {
    loop {
        let req = pb::DiscoverConvsReq {
            cursor: cursor.clone(),
            ..Default::default()
        };
        let (push, r) = exchange(ws, ActiveEvent::DiscoverConvs, req.encode_to_vec()).await?;
        if r.code != 0 {
            anyhow::bail!("DiscoverConvs failed: {}", describe(&push));
        }
        let page = pb::DiscoverConvsResp::decode(r.data)?;
        for c in &page.convs {
            let mut line = serde_json::json!({
                "convId": c.conv_id, "minSeq": c.min_seq, "maxSeq": c.max_seq, "updateTime": c.update_time,
            });
            if c.removed {
                line["removed"] = true.into();
            }
            println!("{line}");
        }
        cursor = page.cursor;
        if !page.more {
            println!("{}", serde_json::json!({ "cursor": cursor }));
            return Ok(());
        }
    }
}
