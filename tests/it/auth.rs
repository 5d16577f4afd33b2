//! Authentication failures close with 3000 and a reason; the token never leaks.

use crate::keys::keypair;
use crate::support::*;

async fn refused(f: &Ferry, q: &str) -> (u16, String) {
    match connect_url(&format!("{}?{q}", f.ws_url())).await {
        Connect::Closed(code, reason) => (code, reason),
        Connect::Connected(_) => panic!("connection with {q:?} was accepted"),
    }
}

#[tokio::test]
async fn every_auth_failure_closes_with_3000_and_a_reason() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let good = token("alice");
    let base = |tok: &str| {
        query(&[
            ("token", tok),
            ("userId", "alice"),
            ("platform", "ios"),
            ("deviceId", "d1"),
        ])
    };

    for (missing, q) in [
        (
            "token",
            query(&[("userId", "alice"), ("platform", "ios"), ("deviceId", "d1")]),
        ),
        (
            "userId",
            query(&[("token", &good), ("platform", "ios"), ("deviceId", "d1")]),
        ),
        (
            "platform",
            query(&[("token", &good), ("userId", "alice"), ("deviceId", "d1")]),
        ),
        (
            "deviceId",
            query(&[("token", &good), ("userId", "alice"), ("platform", "ios")]),
        ),
    ] {
        let (code, reason) = refused(&f, &q).await;
        assert_eq!(code, 3000);
        assert!(reason.contains(missing), "{reason:?} should name {missing}");
    }

    let expired = token_with("alice", -3600, &[]);
    assert_eq!(
        refused(&f, &base(&expired)).await,
        (3000, "token expired".into())
    );

    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-entirely-000"),
    )
    .unwrap();
    assert_eq!(
        refused(&f, &base(&wrong_key)).await,
        (3000, "token signature is invalid".into())
    );

    // alg "none": header {"alg":"none"}, no signature.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(br#"{"sub":"alice","exp":4000000000}"#)
    );
    let (code, reason) = refused(&f, &base(&none)).await;
    assert_eq!(code, 3000, "{reason}");

    let bob_token = token("bob");
    assert_eq!(
        refused(&f, &base(&bob_token)).await,
        (3000, "token does not belong to userId".into())
    );

    let no_exp = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(refused(&f, &base(&no_exp)).await.0, 3000);

    let other_platform = token_with("alice", 3600, &[("platform", "android")]);
    assert_eq!(
        refused(&f, &base(&other_platform)).await,
        (3000, "token is for another platform".into())
    );

    assert_eq!(
        refused(&f, &base("x.y.z")).await,
        (3000, "token is not a valid JWT".into())
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hs = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let not_yet = hs(serde_json::json!({"sub": "alice", "nbf": now + 3600, "exp": now + 7200}));
    assert_eq!(
        refused(&f, &base(&not_yet)).await,
        (3000, "token not yet valid".into())
    );
    let other_device = token_with("alice", 3600, &[("deviceId", "d2")]);
    assert_eq!(
        refused(&f, &base(&other_device)).await,
        (3000, "token is for another device".into())
    );
    // Tokens are bounded at 8 KiB, the whole query string at 12 KiB.
    let oversized =
        hs(serde_json::json!({"sub": "alice", "exp": now + 3600, "pad": "p".repeat(9000)}));
    assert_eq!(
        refused(&f, &base(&oversized)).await,
        (3000, "invalid query parameter token".into())
    );
    let long_query = format!("{}&appVersion={}", base(&good), "v".repeat(13_000));
    assert_eq!(
        refused(&f, &long_query).await,
        (3000, "query string is too long".into())
    );
    let long_meta = format!("{}&deviceModel={}", base(&good), "m".repeat(300));
    assert_eq!(
        refused(&f, &long_meta).await,
        (3000, "query parameter deviceModel is too long".into())
    );
    // A long HS256 token (many claims, well over 256 bytes) logs in.
    let long_ok =
        hs(serde_json::json!({"sub": "alice", "exp": now + 3600, "pad": "p".repeat(3000)}));
    match connect_url(&format!("{}?{}", f.ws_url(), base(&long_ok))).await {
        Connect::Connected(_) => {}
        Connect::Closed(code, reason) => panic!("a 4 kB token was refused: {code} {reason}"),
    }

    // Chinese reasons for language=zh.
    let q = format!("{}&language=zh", base(&expired));
    assert_eq!(refused(&f, &q).await, (3000, "token 已过期".into()));

    // The valid token still works, and no token text ever reached the logs.
    let _ok = f.connect("alice").await;
    let logs = f.logs();
    for t in [&good, &expired, &wrong_key, &bob_token] {
        assert!(!logs.contains(t.as_str()), "a token was logged");
    }
}

/// The production set-up: RS256 and ES256 keys from a JWKS file, with an issuer and
/// an audience. Real-size tokens log in; every other token closes with 3000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_tokens_log_in_and_everything_else_is_refused() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let keys = tempfile::tempdir().unwrap();
    let pem = |kind| std::fs::read(keypair(keys.path(), kind).0).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa")).unwrap();
    let ec = EncodingKey::from_ec_pem(&pem("ec")).unwrap();
    let jwk = |key: &EncodingKey, alg, kid: &str| {
        let mut j = Jwk::from_encoding_key(key, alg).unwrap();
        j.common.key_id = Some(kid.into());
        j
    };
    let set = JwkSet {
        keys: vec![
            jwk(&rsa, Algorithm::RS256, "r1"),
            jwk(&ec, Algorithm::ES256, "e1"),
        ],
    };
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&set).unwrap()).unwrap();
    let c = Cluster::new(
        Backend::Embedded,
        &format!(
            "[auth]\njwks_file = {:?}\nissuer = \"https://id.example\"\naudience = \"ferry\"\n",
            jwks.display().to_string()
        ),
    );
    // The cluster's HS256 secret stays configured: the JWKS must win over it.
    let f = c.start("pod-a");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |over: serde_json::Value| {
        let mut c = serde_json::json!({
            "sub": "alice", "iss": "https://id.example", "aud": "ferry",
            "iat": now, "exp": now + 3600, "platform": "ios", "deviceId": "d1",
            "scope": "im:connect im:send im:sync", "name": "Alice Example"
        });
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let sign = |alg, kid: &str, key: &EncodingKey, over| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims(over), key).unwrap()
    };
    let q = |tok: &str| {
        query(&[
            ("token", tok),
            ("userId", "alice"),
            ("platform", "ios"),
            ("deviceId", "d1"),
        ])
    };
    let rs = sign(Algorithm::RS256, "r1", &rsa, serde_json::json!({}));
    let es = sign(Algorithm::ES256, "e1", &ec, serde_json::json!({}));
    assert!(rs.len() > 256, "an RS256 token is {} bytes", rs.len());
    for (alg, tok) in [("RS256", &rs), ("ES256", &es)] {
        match connect_url(&format!("{}?{}", f.ws_url(), q(tok))).await {
            Connect::Connected(mut c) => {
                c.user = "alice".into();
                assert_eq!(c.conv_seq("single:alice-bob").await.max_seq, "0");
            }
            Connect::Closed(code, reason) => panic!("{alg} refused: {code} {reason}"),
        }
    }
    let none = serde_json::json!({});
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong issuer",
            sign(
                Algorithm::RS256,
                "r1",
                &rsa,
                serde_json::json!({"iss": "https://evil"}),
            ),
            "token issuer not accepted",
        ),
        (
            "wrong audience",
            sign(
                Algorithm::ES256,
                "e1",
                &ec,
                serde_json::json!({"aud": "other"}),
            ),
            "token audience not accepted",
        ),
        (
            "wrong sub",
            sign(
                Algorithm::RS256,
                "r1",
                &rsa,
                serde_json::json!({"sub": "bob"}),
            ),
            "token does not belong to userId",
        ),
        (
            "expired",
            sign(
                Algorithm::RS256,
                "r1",
                &rsa,
                serde_json::json!({"exp": now - 3600}),
            ),
            "token expired",
        ),
        (
            "platform claim",
            sign(
                Algorithm::ES256,
                "e1",
                &ec,
                serde_json::json!({"platform": "web"}),
            ),
            "token is for another platform",
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, "r9", &rsa, none.clone()),
            "token signing key is unknown",
        ),
        (
            "RS key under the EC kid",
            sign(Algorithm::RS256, "e1", &rsa, none.clone()),
            "token signature is invalid",
        ),
        (
            "HS256 with the shared test secret",
            sign(
                Algorithm::HS256,
                "r1",
                &EncodingKey::from_secret(SECRET.as_bytes()),
                none.clone(),
            ),
            "token signature is invalid",
        ),
    ];
    for (what, tok, reason) in cases {
        assert_eq!(refused(&f, &q(&tok)).await, (3000, reason.into()), "{what}");
    }
}

/// Frames a client sends before it hears its refusal are never processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_sent_on_a_refused_socket_is_processed() {
    use futures_util::SinkExt as _;
    use prost::Message as _;
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let conv = "single:alice-bob";
    let q = query(&[
        ("token", &token("mallory")),
        ("userId", "alice"),
        ("platform", "ios"),
        ("deviceId", "d1"),
    ]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?{q}", f.ws_url()))
        .await
        .unwrap();
    let send = crate::proto::pb::SendMsgListReq {
        msg_data_list: vec![msg("alice", conv, "forged")],
        ..Default::default()
    };
    let body = crate::proto::pb::RequestBody {
        event: crate::proto::pb::ActiveEvent::SendMsgList as i32,
        req_id: "r1".into(),
        data: send.encode_to_vec().into(),
    };
    for _ in 0..5 {
        let _ = ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                body.encode_to_vec().into(),
            ))
            .await;
    }
    let mut good = f.connect("bob").await;
    // bob is the recipient: a processed frame would reach him.
    good.no_messages(std::time::Duration::from_secs(2)).await;
    assert_eq!(good.conv_seq(conv).await.max_seq, "0");
}
