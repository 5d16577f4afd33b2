//! CustomRequest: `method` picks an upstream by longest prefix; the body is POSTed
//! there with the caller's identity as headers and the upstream body comes back.

use std::time::Duration;

use bytes::Bytes;

use super::dispatch::{ConnCtx, Reply, decode};
use super::wire::Failure;
use crate::connections::budget::{Budget, Held, Over};
use crate::proto::pb;

/// Longest CustomRequest method accepted, bytes.
pub(crate) const MAX_METHOD_BYTES: usize = 512;

/// Checks that `method` is a plain absolute path: only unreserved characters and
/// '/', no empty, "." or ".." segment. Percent-encoding is refused outright, so no
/// encoded dot segment or separator can reach the upstream and escape the route's
/// base path.
pub(crate) fn valid_method(method: &str) -> Result<(), String> {
    if method.len() > MAX_METHOD_BYTES {
        return Err(format!("method longer than {MAX_METHOD_BYTES} bytes"));
    }
    let Some(path) = method.strip_prefix('/') else {
        return Err("method must start with '/'".into());
    };
    if let Some(c) = method
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~/".contains(*c)))
    {
        return Err(format!("method may not contain {c:?}"));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("method may not contain empty, '.' or '..' segments".into());
    }
    Ok(())
}

/// Whether `prefix` covers `method` on a segment boundary: `/v1/relation` covers
/// `/v1/relation` and `/v1/relation/x`, not `/v1/relationship`.
fn covers(prefix: &str, method: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match method.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The upstream URL for `method`, by longest matching prefix.
pub(crate) fn route(
    routes: &std::collections::BTreeMap<String, String>,
    method: &str,
) -> Option<String> {
    routes
        .iter()
        .filter(|(prefix, _)| covers(prefix, method))
        .max_by_key(|(prefix, _)| prefix.trim_end_matches('/').len())
        .map(|(_, base)| format!("{}{}", base.trim_end_matches('/'), method))
}

/// A client-chosen value as an upstream header: printable ASCII is passed as it is,
/// every other byte of its UTF-8 (and `%` itself) percent-encoded, so no raw
/// non-ASCII byte reaches an upstream's header parser and a standard percent-decode
/// gives the value back exactly ("華為 50%" → "%E8%8F%AF%E7%82%BA 50%25").
fn header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn custom_request(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::CustomRequestBody = decode(data, "CustomRequestBody")?;
    valid_method(&req.method).map_err(|why| Failure::Request(format!("invalid method: {why}")))?;
    let app = &ctx.app;
    let Some(url) = route(&app.cfg.custom.routes, &req.method) else {
        return Err(Failure::Request(format!(
            "unknown method {}",
            crate::domain::quote(&req.method)
        )));
    };
    let mut call = app
        .http
        .post(&url)
        .timeout(Duration::from_millis(app.cfg.custom.timeout_ms))
        .header("content-type", "application/octet-stream")
        .header("x-ferry-user-id", ctx.user.as_str())
        .header("x-ferry-platform", header_value(&ctx.conn.platform))
        .header("x-ferry-device-id", header_value(&ctx.conn.device_id))
        .header("x-ferry-conn-id", &ctx.conn.conn_id)
        .body(req.data);
    for (k, v) in ctx.meta.iter() {
        call = call.header(
            format!("x-ferry-{}", k.to_ascii_lowercase()),
            header_value(v),
        );
    }
    let resp = call.send().await.map_err(|e| {
        if e.is_timeout() {
            Failure::Retry(format!("upstream for {} timed out", req.method))
        } else {
            Failure::Retry(format!("upstream for {} unreachable", req.method))
        }
    })?;
    let status = resp.status();
    let (body, held) = read_bounded(resp, app.cfg.limits.max_response_bytes, &ctx.budget)
        .await
        .map_err(|e| match e {
            BodyError::Over(o) => o.into(),
            BodyError::TooLarge(limit) => Failure::Request(format!(
                "upstream for {} answered more than {limit} bytes",
                req.method
            )),
            BodyError::Broken => Failure::Retry(format!("upstream for {} broke off", req.method)),
        })?;
    if status.is_success() {
        let mut reply = Reply::data(body);
        reply.held = Some(held);
        return Ok(reply);
    }
    // Redirects are not followed (src/outbound.rs), and following one later would
    // not help: the client is told, not asked to retry.
    if status.is_redirection() {
        return Err(Failure::Request(format!(
            "upstream for {} answered a redirect ({status}); redirects are not followed",
            req.method
        )));
    }
    let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if status.is_client_error() {
        Err(Failure::Request(format!(
            "upstream answered {status}: {detail}"
        )))
    } else {
        Err(Failure::Retry(format!("upstream answered {status}")))
    }
}

enum BodyError {
    TooLarge(usize),
    Broken,
    /// The answer budget had no room for it (`connections::budget`).
    Over(Over),
}

/// Reads the upstream body, refusing it as soon as it exceeds `limit` bytes (it would
/// become one frame to the client). Its worst case (the announced length, or the
/// limit) is taken from the answer budget before the first byte is read.
async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    budget: &Budget,
) -> Result<(Bytes, Held), BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let most = announced.map_or(limit, |n| n as usize);
    let mut held = budget.take(most).await.map_err(BodyError::Over)?;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|_| BodyError::Broken)? {
        if body.len() + chunk.len() > most {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    held.shrink_to(body.len());
    Ok((body.freeze(), held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_carry_only_printable_ascii_and_decode_back() {
        assert_eq!(header_value("iPhone 15"), "iPhone 15");
        assert_eq!(header_value("華為 50%"), "%E8%8F%AF%E7%82%BA 50%25");
        assert_eq!(header_value("a\u{202e}b"), "a%E2%80%AEb");
        assert!(
            header_value("Ünï\t")
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b))
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let routes = [
            ("/v1".to_owned(), "http://a".to_owned()),
            ("/v1/relation".to_owned(), "http://b/".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            route(&routes, "/v1/relation/getFriendList").as_deref(),
            Some("http://b/v1/relation/getFriendList")
        );
        assert_eq!(
            route(&routes, "/v1/user").as_deref(),
            Some("http://a/v1/user")
        );
        assert_eq!(route(&routes, "/v2/x"), None);
        // A prefix matches whole segments only.
        assert_eq!(
            route(&routes, "/v1/relationship").as_deref(),
            Some("http://a/v1/relationship")
        );
        assert_eq!(route(&routes, "/v1x"), None);
    }

    #[test]
    fn methods_are_plain_paths() {
        assert!(valid_method("/v1/relation/getFriendList").is_ok());
        assert!(valid_method("/v1/a.b~c-d_e").is_ok());
        for bad in [
            "v1/x",
            "/v1/../admin",
            "/v1/./x",
            "/v1//x",
            "/v1/",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E/admin",
            "/v1/x?y=1",
            "/v1/x#y",
            "/v1/x\\..\\y",
            "/v1/\u{e9}",
        ] {
            assert!(valid_method(bad).is_err(), "{bad:?} accepted");
        }
        assert!(valid_method(&format!("/{}", "a".repeat(MAX_METHOD_BYTES))).is_err());
    }
}
