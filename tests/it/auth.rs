//! Authentication failures close with 3000 and a reason; the token never leaks.

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
