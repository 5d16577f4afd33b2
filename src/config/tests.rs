//! The configuration's own tests: defaults, unknown keys, every key's check.

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn unknown_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ferry.toml");
    std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap();
    let err = Config::load(Some(&f)).unwrap_err().to_string();
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn validation_reports_every_problem_at_once() {
    let mut c = Config::default();
    c.pipeline.delay_tiers_secs = vec![5, 1];
    c.scylla.keyspace = "9lives".into();
    c.pipeline.presence_ttl_secs = 0;
    c.custom.timeout_ms = 0;
    c.log.append_timeout_ms = 10_000_000;
    c.server.listen_backlog = 0;
    let err = c.validate().unwrap_err().to_string();
    for key in [
        "pipeline.delay_tiers_secs",
        "scylla.keyspace",
        "pipeline.presence_ttl_secs",
        "custom.timeout_ms",
        "log.append_timeout_ms",
        "server.listen_backlog",
    ] {
        assert!(
            err.contains(&format!("`{key}`")),
            "{key} missing from: {err}"
        );
    }
    assert_eq!(err.lines().count(), 6, "{err}");
}

#[test]
fn the_durability_horizon_defaults_to_the_periodic_sync_and_is_bounded() {
    let mut c = Config::default();
    assert_eq!(c.scylla.durability_horizon_secs, 10);
    c.scylla.durability_horizon_secs = 0;
    assert!(
        c.validate().is_ok(),
        "0: the store syncs before it acknowledges"
    );
    c.scylla.durability_horizon_secs = 601;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("`scylla.durability_horizon_secs`"), "{err}");
}

#[test]
fn keyspace_rule() {
    for ok in ["ferry", "ferry_test_1a", &"k".repeat(48)] {
        assert!(keyspace_name_ok(ok), "{ok}");
    }
    for bad in [
        "",
        "9lives",
        "_x",
        "x-y",
        "x; DROP KEYSPACE system",
        &"k".repeat(49),
    ] {
        assert!(!keyspace_name_ok(bad), "{bad}");
    }
}

#[test]
fn redacted_shows_secrets_are_set_not_their_value() {
    let mut c = Config::default();
    c.auth.hs256_secret = Some("hs-secret-value-123456".into());
    c.scylla.password = Some("db-password-value".into());
    c.api.service_token = Some("service-token-value".into());
    c.kafka
        .properties
        .insert("sasl.password".into(), "kafka-password-value".into());
    c.kafka
        .properties
        .insert("client.id".into(), "visible-client".into());
    c.offline.forwarder.bearer_token = Some("forwarder-bearer-value".into());
    c.offline.forwarder.url =
        Some("https://push:url-password-value@push.internal/v1?tok%65n=url-token-value".into());
    c.custom.routes.insert(
        "/v1".into(),
        "http://up.internal/base?x=1&api%5Fkey=route-key-value".into(),
    );
    let shown = toml::to_string_pretty(&c.redacted()).unwrap();
    for secret in [
        "forwarder-bearer-value",
        "url-password-value",
        "url-token-value",
        "route-key-value",
        "hs-secret-value-123456",
        "db-password-value",
        "service-token-value",
        "kafka-password-value",
    ] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
    }
    assert!(shown.contains("hs256_secret = \"set\""), "{shown}");
    assert!(shown.contains("visible-client"), "{shown}");
    let unset = toml::to_string_pretty(&Config::default().redacted()).unwrap();
    assert!(
        !unset.contains("\"set\""),
        "an unset secret stays unset:\n{unset}"
    );
}

#[test]
fn the_conformance_echo_needs_a_loopback_listener() {
    let mut c = Config::default();
    c.server.conformance_echo = true;
    c.validate().unwrap();
    c.server.listen = "0.0.0.0:8080".into();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("server.conformance_echo"), "{err}");
}

#[test]
fn validation_names_the_key() {
    let mut c = Config::default();
    c.pipeline.delay_tiers_secs = vec![5, 1];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("pipeline.delay_tiers_secs"), "{err}");
}

#[test]
fn the_forwarder_needs_an_http_url_and_sane_retries() {
    let mut c = Config::default();
    c.offline.forwarder.url = Some("push.internal/v1".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("offline.forwarder.url"), "{err}");
    c.offline.forwarder.url = Some("https://push.internal/v1".into());
    c.validate().unwrap();
    c.offline.forwarder.retry_max_ms = 10;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("offline.forwarder.retry_max_ms"), "{err}");
}
