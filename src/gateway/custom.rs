//! CustomRequest: `method` picks an upstream by longest prefix; the body is POSTed
//! there with the caller's identity as headers and the upstream body comes back.

use std::time::Duration;

use bytes::Bytes;

use super::dispatch::{ConnCtx, Reply, decode};
use super::wire::Failure;
use crate::proto::pb;

/// The upstream URL for `method`, by longest matching prefix.
pub(crate) fn route(
    routes: &std::collections::BTreeMap<String, String>,
    method: &str,
) -> Option<String> {
    routes
        .iter()
        .filter(|(prefix, _)| method.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, base)| format!("{}{}", base.trim_end_matches('/'), method))
}

pub(crate) async fn custom_request(ctx: &ConnCtx, data: Bytes) -> Result<Reply, Failure> {
    let req: pb::CustomRequestBody = decode(data, "CustomRequestBody")?;
    if !req.method.starts_with('/') || req.method.contains("..") {
        return Err(Failure::Request(format!("invalid method {:?}", req.method)));
    }
    let app = &ctx.app;
    let Some(url) = route(&app.cfg.custom.routes, &req.method) else {
        return Err(Failure::Request(format!("unknown method {}", req.method)));
    };
    let mut call = app
        .http
        .post(&url)
        .timeout(Duration::from_millis(app.cfg.custom.timeout_ms))
        .header("content-type", "application/octet-stream")
        .header("x-ferry-user-id", ctx.user.as_str())
        .header("x-ferry-platform", &ctx.conn.platform)
        .header("x-ferry-device-id", &ctx.conn.device_id)
        .header("x-ferry-conn-id", &ctx.conn.conn_id)
        .body(req.data);
    for (k, v) in &ctx.meta {
        call = call.header(format!("x-ferry-{}", k.to_ascii_lowercase()), v.as_str());
    }
    let resp = call.send().await.map_err(|e| {
        if e.is_timeout() {
            Failure::Retry(format!("upstream for {} timed out", req.method))
        } else {
            Failure::Retry(format!("upstream for {} unreachable", req.method))
        }
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|_| Failure::Retry(format!("upstream for {} broke off", req.method)))?;
    if status.is_success() {
        return Ok(Reply::data(body));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
