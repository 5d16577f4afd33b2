//! The one HTTP client policy for calls ferry makes (CustomRequest upstreams, the
//! offline forwarder's push service): redirects are never followed. A 3xx answer is
//! returned as it is, so a request carrying a caller's identity headers (or the
//! forwarder's bearer token) never reaches a host other than the configured one, and
//! an upstream cannot point ferry at an internal address and have the answer relayed.

use std::time::Duration;

/// The client every outbound call uses.
pub(crate) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}
