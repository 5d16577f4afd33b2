//! Entry points for the fuzz targets in `fuzz/` (not an API; hidden from the docs).
//!
//! Each function feeds arbitrary bytes to the real code path a client or a log record
//! reaches, and panics when an invariant that must hold for every input is broken, so
//! libFuzzer reports it as a crash. The targets stay one line each; the invariants live
//! here, next to the code they check, and the regression tests below replay the inputs
//! that once broke them.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;

mod offline;
pub use offline::offline_handoff;

use crate::app;
use crate::config::{AuthConfig, Config};
use crate::connections::outbox::Outbox;
use crate::connections::registry::{Closer, Connection};
use crate::domain::UserId;
use crate::gateway::Gateway;
use crate::gateway::auth::{Authenticator, redact_query};
use crate::gateway::dispatch::{self, ConnCtx};
use crate::gateway::session::ConnectParams;
use crate::gateway::wire::{self, Failure};
use crate::msglog::LogRecord;
use crate::pipeline::sequencer::Sequencer;
use crate::proto::pb::{self, PushEvent, RequestBody};

mod notices;
pub use notices::notices_api;

/// The user every fuzzed frame comes from, and the group it belongs to.
const USER: &str = "fuzz_a";
const GROUP: &str = "g1";
/// Any request must be answered within this (backends here are embedded and local).
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// One ferry process on the embedded backend, started once per fuzzing process: a real
/// app (all roles, listening on a free port) under a runtime whose worker keeps the roles
/// running between inputs.
struct Harness {
    rt: tokio::runtime::Runtime,
    state: Gateway,
    ctx: Arc<ConnCtx>,
    /// Where the app listens (the HTTP targets call it there).
    addr: std::net::SocketAddr,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        // Data lives in a directory of its own per process, removed first so a
        // reused pid starts empty (TMPDIR chooses where; tmpfs keeps fsyncs cheap).
        let dir = std::env::temp_dir().join(format!("ferry-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        remove_stale_dirs();
        let mut cfg = Config {
            data_dir: dir,
            pod: "fuzz".into(),
            ..Config::default()
        };
        cfg.server.listen = "127.0.0.1:0".into();
        cfg.auth.hs256_secret = Some(HS256_SECRET.into());
        cfg.api.service_token = Some("fuzz-service-token".into());
        // CustomRequest reaches reqwest with a fuzzed path; nothing listens on port 9.
        cfg.custom.routes = routes();
        cfg.custom.timeout_ms = 200;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (state, ctx, addr) = rt.block_on(async {
            let running = app::start(cfg, &app::ALL_ROLES, None)
                .await
                .expect("ferry starts on the embedded backend");
            let addr = running.addr;
            let state = running.gateway;
            state
                .store
                .set_member(GROUP, USER, 0)
                .await
                .expect("membership");
            let conn = Arc::new(Connection {
                conn_id: "fuzz-conn".into(),
                user: USER.into(),
                platform: "ios".into(),
                device_id: "d1".into(),
                outbox: Outbox::new(
                    state.cfg.limits.send_queue,
                    state.cfg.limits.send_queue_bytes,
                ),
                closer: Closer::default(),
            });
            // The session's queue is drained and dropped: frames are checked where
            // they are produced.
            let drained = conn.clone();
            tokio::spawn(async move {
                loop {
                    drained.closer.woken().await;
                    while drained.outbox.pop().is_some() {}
                }
            });
            let account = state.accounts.join(USER);
            let ctx = Arc::new(ConnCtx {
                app: state.clone(),
                user: UserId::parse(USER).expect("valid user id"),
                conn,
                meta: crate::gateway::meta::Meta::pack([("language", "en")]),
                budget: state.accounts.budget(&account),
                account,
            });
            (state, ctx, addr)
        });
        Harness {
            rt,
            state,
            ctx,
            addr,
        }
    })
}

/// Removes the data directories of fuzzing processes that are gone (a static is never
/// dropped, so each process leaves its directory behind).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("ferry-fuzz-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One binary WebSocket frame from an authenticated client, handled as the session's
/// read loop handles it: decoded as a RequestBody, then dispatched to the real
/// handlers. Every frame gets exactly one response first, a PushBody carrying a
/// ResponseBody for the same event and reqId, within a bounded time.
pub fn session_frame(data: &[u8]) {
    let h = harness();
    let frames = h.rt.block_on(async {
        match RequestBody::decode(Bytes::copy_from_slice(data)) {
            Err(e) => (
                None,
                vec![wire::failure(0, "", &Failure::malformed("RequestBody", &e))],
            ),
            Ok(req) => {
                let expect = (req.event, req.req_id.clone());
                let frames = tokio::time::timeout(ANSWER_WITHIN, dispatch::handle(&h.ctx, req))
                    .await
                    .expect("every request is answered in bounded time");
                (Some(expect), frames)
            }
        }
    });
    let (expect, frames) = frames;
    let first = frames.first().expect("a response frame");
    let push = pb::PushBody::decode(first.clone()).expect("responses are PushBody frames");
    assert_eq!(push.event, PushEvent::PushResponseBody as i32);
    let resp = pb::ResponseBody::decode(push.data).expect("a ResponseBody");
    if let Some((event, req_id)) = expect {
        assert_eq!(
            resp.req_id, req_id,
            "the response names the request's reqId"
        );
        assert_eq!(resp.event, event, "the response names the request's event");
    }
    if resp.code != pb::response_body::Code::Success as i32 {
        let err = pb::CustomResponseError::decode(resp.data).expect("CommonResp at field 1");
        let msg = err.common_resp.and_then(|c| c.msg).unwrap_or_default();
        assert!(!msg.is_empty(), "every error carries a readable message");
    }
    for f in &frames[1..] {
        let push = pb::PushBody::decode(f.clone()).expect("pushes are PushBody frames");
        assert_eq!(push.event, PushEvent::PushMsgDataList as i32);
    }
}

/// The HS256 secret the fuzzing app and `connect_query` accept (seeds are signed with it).
pub const HS256_SECRET: &str = "ferry-fuzzing-secret-0123456789";

/// The JWKS `connect_query` also accepts: one P-256 key without a kid, issuer
/// `ferry-fuzz`, audience `ferry` (seeds are signed with its private half, not kept).
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","x":"LZGFcWUznCDRo1JPEpJtIAeaC9pNi04DjE5qMXuikCM","y":"20qGwJ4rWSTpE-1ePG8fcyphCPJh49Iqag0dYXT2370"}]}"#;

fn authenticators() -> &'static [Authenticator; 2] {
    static A: OnceLock<[Authenticator; 2]> = OnceLock::new();
    A.get_or_init(|| {
        let hs = AuthConfig {
            hs256_secret: Some(HS256_SECRET.into()),
            ..AuthConfig::default()
        };
        let path =
            std::env::temp_dir().join(format!("ferry-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, JWKS).expect("write the JWKS");
        let jwks = AuthConfig {
            jwks_file: Some(path.clone()),
            issuer: Some("ferry-fuzz".into()),
            audience: Some("ferry".into()),
            ..AuthConfig::default()
        };
        let a = [
            Authenticator::new(&hs, None).expect("HS256 authenticator"),
            Authenticator::new(&jwks, None).expect("JWKS authenticator"),
        ];
        let _ = std::fs::remove_file(path);
        a
    })
}

/// A WebSocket upgrade's query string: parsed as the gateway parses it, its token
/// verified by an HS256 and a JWKS authenticator. Invariants: no panic, every refusal
/// has a close reason that fits a close frame (123 bytes) in both languages, and the
/// redacted form that logs record carries no token the gateway would read.
pub fn connect_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let p = ConnectParams::parse(&query);
    let _ = p.language_zh();
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let (user, platform, device) = (field(&p.user_id), field(&p.platform), field(&p.device_id));
    if let Some(token) = &p.token {
        for a in authenticators() {
            if let Err(f) = a.verify(token, &user, &platform, &device) {
                for zh in [false, true] {
                    assert!(f.reason(zh).len() <= 123, "close reason too long: {f:?}");
                }
            }
        }
    }
    let redacted = ConnectParams::parse(&redact_query(&query));
    if let Some(t) = redacted.token {
        assert_eq!(t, "REDACTED", "the redacted query still carries a token");
    }
}

/// The routes `custom_route` and the fuzzing app resolve against: nested prefixes,
/// bases with and without a path and a trailing slash.
fn routes() -> BTreeMap<String, String> {
    [
        ("/v1", "http://127.0.0.1:9"),
        ("/v1/relation", "http://127.0.0.1:9/rel/"),
        ("/v2/user/", "http://127.0.0.1:9/api"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A CustomRequest method, checked and routed as the gateway does it. Invariant: a
/// method that is accepted reaches, once the HTTP client has parsed and normalised
/// the URL, the route's own upstream under its base path and prefix, on a segment
/// boundary: no dot segment, encoded or not, and no prefix that merely shares
/// characters escapes into another endpoint.
pub fn custom_route(data: &[u8]) {
    let method = String::from_utf8_lossy(data);
    let routes = routes();
    // The two steps custom_request takes before it calls the upstream.
    if crate::gateway::custom::valid_method(&method).is_err() {
        return;
    }
    let Some(url) = crate::gateway::custom::route(&routes, &method) else {
        return;
    };
    let Ok(parsed) = reqwest::Url::parse(&url) else {
        // Refused by the client before any request is made.
        return;
    };
    // The route a person reading the table expects: the longest prefix the method
    // equals or continues with a '/' (so `/v1/relationship` belongs to `/v1`).
    let (prefix, base) = routes
        .iter()
        .filter(|(p, _)| {
            let p = p.trim_end_matches('/');
            method == p || method.starts_with(&format!("{p}/"))
        })
        .max_by_key(|(p, _)| p.trim_end_matches('/').len())
        .expect("an accepted method matched a route");
    let base = reqwest::Url::parse(base).expect("valid base URL");
    assert_eq!(
        parsed.host_str(),
        base.host_str(),
        "{method:?} left the upstream host"
    );
    assert_eq!(
        parsed.port(),
        base.port(),
        "{method:?} left the upstream port"
    );
    let allowed = format!(
        "{}{}",
        base.path().trim_end_matches('/'),
        prefix.trim_end_matches('/')
    );
    let path = parsed.path();
    assert!(
        path == allowed || path.starts_with(&format!("{allowed}/")),
        "{method:?} reached {path:?}, outside {allowed:?}"
    );
}

/// One record on the inbound topic, applied by the real sequencer to the embedded
/// store. Invariants: no panic, done in bounded time, and the seq row of a
/// conversation never goes back and has a stored message at every seq it grew by.
pub fn inbound_record(data: &[u8]) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static OFFSET: AtomicI64 = AtomicI64::new(0);
    let h = harness();
    let offset = OFFSET.fetch_add(1, Ordering::Relaxed);
    let value = Bytes::copy_from_slice(data);
    let conv = crate::proto::records::InboundRecord::decode(value.clone())
        .ok()
        .and_then(|r| match r.kind {
            Some(crate::proto::records::inbound_record::Kind::Messages(b)) => Some(b.conv_id),
            _ => None,
        });
    // The seq row is keyed by the parsed convId's canonical form.
    let row = conv
        .as_deref()
        .and_then(|c| crate::domain::ConvId::parse(c).ok())
        .map(|c| c.to_string());
    let s = &h.state;
    let seq = Sequencer {
        log: s.log.clone(),
        store: s.store.clone(),
        topics: s.topics.clone(),
        router: s.router.clone(),
        offline: false,
        stalls: Default::default(),
        budget: Default::default(),
    };
    let rec = LogRecord {
        topic: s.topics.inbound(),
        // A partition the sequencer role never reads, so its fence offsets are ours.
        partition: 1 << 20,
        offset,
        key: Bytes::from(conv.clone().unwrap_or_default()),
        value: Some(value),
        timestamp_ms: 1_700_000_000_000 + offset,
        headers: Vec::new(),
    };
    h.rt.block_on(async {
        let before = match &row {
            Some(c) => s
                .store
                .conv_state(c)
                .await
                .expect("store")
                .map(|c| c.max_seq),
            None => None,
        };
        tokio::time::timeout(ANSWER_WITHIN, seq.apply(&rec))
            .await
            .expect("a record is applied in bounded time")
            .expect("the embedded store does not fail");
        let Some(c) = &row else { return };
        let after = s
            .store
            .conv_state(c)
            .await
            .expect("store")
            .map(|c| c.max_seq);
        assert!(after >= before, "the seq row of {c:?} went back");
        let (from, to) = (before.unwrap_or(0) + 1, after.unwrap_or(0));
        if to >= from {
            let want: Vec<u64> = (from..=to).collect();
            let got = s.store.messages(c, &want).await.expect("store");
            let got: Vec<u64> = got.iter().map(|m| m.seq).collect();
            assert_eq!(got, want, "seqs of {c:?} have gaps");
        }
    });
}

#[cfg(test)]
mod tests {
    //! The targets without I/O; the others run in tests/it/fuzz.rs.
    use super::*;

    #[test]
    fn seeds_pass() {
        for t in ["connect_query", "custom_route"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(t);
            for f in std::fs::read_dir(&dir).unwrap() {
                let data = std::fs::read(f.unwrap().path()).unwrap();
                match t {
                    "connect_query" => connect_query(&data),
                    _ => custom_route(&data),
                }
            }
        }
    }
}
