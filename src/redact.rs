//! Secrets kept out of what is printed or logged: a URL's password, and the value of
//! every query parameter whose name names a secret. Names are compared as a server
//! reads them, percent-decoded ('+' as a space), so `tok%65n=…` is a token too.

/// The words that make a (decoded) parameter name a secret.
const SECRET_WORDS: [&str; 8] = [
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "sig",
    "auth",
    "credential",
];

/// Whether a parameter name, once decoded, names a secret.
pub(crate) fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// `query` with the value of every parameter whose decoded name `hide` picks
/// replaced by `with`; everything else is kept byte for byte.
pub(crate) fn query(query: &str, hide: impl Fn(&str) -> bool, with: &str) -> String {
    query
        .split('&')
        .map(|kv| {
            let raw_key = kv.split_once('=').map_or(kv, |(k, _)| k);
            let key = form_urlencoded::parse(raw_key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if hide(&key) {
                format!("{raw_key}={with}")
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A URL-ish configuration value as `ferry config` shows it: the password of its
/// user info and the values of secret-named query parameters read "set".
pub(crate) fn url(value: &str) -> String {
    const SET: &str = "set";
    let (before_fragment, fragment) = match value.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (value, None),
    };
    let (base, q) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            let authority = match authority.rsplit_once('@') {
                Some((info, host)) if info.contains(':') => {
                    let user = info.split_once(':').map_or(info, |(u, _)| u);
                    format!("{user}:{SET}@{host}")
                }
                _ => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(q) = q {
        out.push('?');
        out.push_str(&query(q, secret_name, SET));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_names_are_read_as_a_server_reads_them() {
        let is_token = |k: &str| k == "token";
        for q in [
            "userId=a&token=s.e.cret&platform=ios",
            "userId=a&tok%65n=s.e.cret&platform=ios",
            "userId=a&%74%6F%6B%65%6E=s.e.cret&platform=ios",
        ] {
            let shown = query(q, is_token, "REDACTED");
            assert!(!shown.contains("s.e.cret"), "{shown}");
            assert!(shown.starts_with("userId=a&") && shown.ends_with("=REDACTED&platform=ios"));
        }
        // A name that only looks alike is kept.
        assert_eq!(query("tokens=1", is_token, "X"), "tokens=1");
    }

    #[test]
    fn urls_lose_passwords_and_secret_parameters() {
        let shown =
            url("https://ops:hunter22@keys.example:8443/jwks.json?api%5Fk%65y=abc123&v=2#top");
        assert_eq!(
            shown,
            "https://ops:set@keys.example:8443/jwks.json?api%5Fk%65y=set&v=2#top"
        );
        for plain in [
            "http://jaeger:4317",
            "https://push.internal/v1?region=eu",
            "/a/b",
        ] {
            assert_eq!(url(plain), plain);
        }
    }
}
