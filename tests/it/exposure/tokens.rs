//! Tokens are checked for whom and for how long they were minted: public keys need
//! an audience and an issuer, a JWK's `alg` is the one accepted, symmetric JWKs and
//! unknown `crit` extensions are refused, and lifetimes are capped.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::refused_start;
use crate::keys::keypair;
use crate::support::*;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn q(tok: &str) -> String {
    query(&[
        ("token", tok),
        ("userId", "alice"),
        ("platform", "ios"),
        ("deviceId", "d1"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_need_an_audience_and_an_issuer() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keypair(keys.path(), "ec");
    let ec = EncodingKey::from_ec_pem(&std::fs::read(private).unwrap()).unwrap();
    let set = JwkSet {
        keys: vec![Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap()],
    };
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&set).unwrap()).unwrap();
    let jwks = jwks.to_str().unwrap();
    let public = public.to_str().unwrap();
    for (key, file, extra) in [
        ("auth.jwks_file", jwks, None),
        ("auth.public_key_file", public, None),
        (
            "auth.jwks_file",
            jwks,
            Some(("FERRY_AUTH__AUDIENCE", "ferry")),
        ),
        (
            "auth.public_key_file",
            public,
            Some(("FERRY_AUTH__ISSUER", "https://id.example")),
        ),
    ] {
        let var = format!("FERRY_{}", key.replace('.', "__").to_ascii_uppercase());
        let mut env = vec![(var.as_str(), file)];
        env.extend(extra);
        let err = refused_start(&env);
        assert!(
            err.contains(key) && err.contains("auth.audience and auth.issuer"),
            "{key}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symmetric_jwk_is_refused_at_start_up() {
    let keys = tempfile::tempdir().unwrap();
    let jwks = keys.path().join("jwks.json");
    std::fs::write(
        &jwks,
        r#"{"keys":[{"kty":"oct","kid":"shared-1","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#,
    )
    .unwrap();
    let err = refused_start(&[
        ("FERRY_AUTH__JWKS_FILE", jwks.to_str().unwrap()),
        ("FERRY_AUTH__AUDIENCE", "ferry"),
        ("FERRY_AUTH__ISSUER", "https://id.example"),
    ]);
    assert!(err.contains("shared-1") && err.contains("oct"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwk_alg_is_the_only_one_accepted_for_its_key() {
    let keys = tempfile::tempdir().unwrap();
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(keypair(keys.path(), "rsa").0).unwrap()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS384).unwrap();
    jwk.common.key_id = Some("r384".into());
    let jwks = keys.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let c = Cluster::new(
        Backend::Embedded,
        &format!(
            "[auth]\njwks_file = {:?}\nissuer = \"https://id.example\"\naudience = \"ferry\"\n",
            jwks.to_str().unwrap()
        ),
    );
    let f = c.start("pod-a");
    let claims = serde_json::json!({
        "sub": "alice", "iss": "https://id.example", "aud": "ferry", "exp": now() + 600
    });
    let sign = |alg| {
        let mut h = Header::new(alg);
        h.kid = Some("r384".into());
        jsonwebtoken::encode(&h, &claims, &rsa).unwrap()
    };
    let Connect::Closed(code, reason) =
        connect_url(&format!("{}?{}", f.ws_url(), q(&sign(Algorithm::RS256)))).await
    else {
        panic!("an RS256 token passed for an RS384 key");
    };
    assert_eq!(
        (code, reason.as_str()),
        (3000, "token signature is invalid")
    );
    let Connect::Connected(_) =
        connect_url(&format!("{}?{}", f.ws_url(), q(&sign(Algorithm::RS384)))).await
    else {
        panic!("the key's own alg was refused");
    };
}

/// An HS256 token with `header` as its protected header, signed with the test secret.
fn hs256_with_header(header: serde_json::Value, claims: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{signing_input}.{sig}")
}

/// Connects alice with `tok`: None when connected, else the close (code, reason).
async fn closed_with(f: &Ferry, tok: &str) -> Option<(u16, String)> {
    match connect_url(&format!("{}?{}", f.ws_url(), q(tok))).await {
        Connect::Connected(_) => None,
        Connect::Closed(code, reason) => Some((code, reason)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_crit_and_overlong_lifetimes_are_refused() {
    // Defaults: no crit understood, tokens valid for at most a day.
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let claims = serde_json::json!({ "sub": "alice", "exp": now() + 600 });
    let plain = hs256_with_header(
        serde_json::json!({ "alg": "HS256", "typ": "JWT" }),
        claims.clone(),
    );
    assert_eq!(
        closed_with(&f, &plain).await,
        None,
        "a plain token was refused"
    );
    let crit = hs256_with_header(
        serde_json::json!({ "alg": "HS256", "typ": "JWT", "crit": ["exp"], "exp": 1 }),
        claims,
    );
    let (code, reason) = closed_with(&f, &crit)
        .await
        .expect("a token with crit was accepted");
    assert_eq!(code, 3000);
    assert!(reason.contains("crit"), "{reason}");
    // Two days is one too many; a day less a minute passes.
    let (code, reason) = closed_with(&f, &token_with("alice", 2 * 86_400, &[]))
        .await
        .expect("a two-day token was accepted");
    assert_eq!(code, 3000);
    assert!(reason.contains("auth.max_token_lifetime_secs"), "{reason}");
    assert_eq!(
        closed_with(&f, &token_with("alice", 86_340, &[])).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_lifetime_cap_is_configurable() {
    let c = Cluster::new(
        Backend::Embedded,
        "[auth]\nmax_token_lifetime_secs = 3600\n",
    );
    let f = c.start("pod-a");
    let (code, reason) = closed_with(&f, &token_with("alice", 7200, &[]))
        .await
        .expect("a two-hour token was accepted");
    assert_eq!(code, 3000);
    assert!(reason.contains("auth.max_token_lifetime_secs"), "{reason}");
    assert_eq!(closed_with(&f, &token_with("alice", 3540, &[])).await, None);
}
