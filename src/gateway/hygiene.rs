//! What the connect parameters may contain. Metadata, platform and deviceId travel on
//! to CustomRequest upstreams as HTTP header values and into logs: a CR or LF would
//! make every upstream call of the socket fail (the client retrying for ever), and
//! control or bidirectional-override characters garble whatever displays them. They
//! are refused at connect with a close reason naming the parameter.

/// Whether `s` may travel as a header value: printable ASCII (space included) and
/// printable non-ASCII text, with no control character (C0, DEL, C1) and no
/// bidirectional formatting character.
pub(crate) fn printable(s: &str) -> bool {
    s.chars().all(|c| !c.is_control() && !is_bidi_control(c))
}

/// The first of platform, deviceId and the metadata (by name) that is not
/// [`printable`]: these travel on as header values.
pub(crate) fn unprintable<'a>(
    platform: &str,
    device: &str,
    meta: &'a [(String, String)],
) -> Option<&'a str> {
    [("platform", platform), ("deviceId", device)]
        .into_iter()
        .chain(meta.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .find(|(_, v)| !printable(v))
        .map(|(k, _)| k)
}

/// The connect parameters a client may give, each at most once.
const PARAMS: [&str; 9] = [
    "token",
    "userId",
    "platform",
    "deviceId",
    "networkUsed",
    "deviceModel",
    "osVersion",
    "appVersion",
    "language",
];

/// The first known parameter `query` gives more than once (which value would count
/// is a guess the client should not leave to the server).
pub(crate) fn repeated(query: &str) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k)
        .filter(|k| PARAMS.contains(&k.as_ref()))
        .find(|k| !seen.insert(k.clone()))
        .map(|k| k.into_owned())
}

/// Unicode's bidirectional formatting characters (LRM, RLM, ALM, the embeddings,
/// overrides and isolates): invisible, and they reorder the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// The platforms metrics are labelled with; any other value counts as `other`, so a
/// client cannot create label values (series) at will.
const PLATFORMS: [&str; 10] = [
    "ios",
    "android",
    "web",
    "windows",
    "macos",
    "linux",
    "ipad",
    "harmony",
    "miniprogram",
    "test",
];

/// The metrics label for a client-chosen `platform`.
pub(crate) fn platform_label(platform: &str) -> &'static str {
    PLATFORMS
        .iter()
        .find(|p| p.eq_ignore_ascii_case(platform))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_controls_and_bidi_are_not_printable() {
        for ok in [
            "iPhone 15 Pro",
            "zh-CN",
            "3.2.1 (build 7)",
            "Galaxy S24 Ünïcode",
            "中文",
        ] {
            assert!(printable(ok), "{ok:?}");
        }
        for bad in [
            "a\r\nX-Evil: 1",
            "a\n",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
            "rlo\u{202E}cod",
            "iso\u{2066}",
        ] {
            assert!(!printable(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_known_parameter_given_twice_is_named() {
        assert_eq!(
            repeated("userId=a&platform=ios&userId=b").as_deref(),
            Some("userId")
        );
        assert_eq!(repeated("us%65rId=a&userId=b").as_deref(), Some("userId"));
        assert_eq!(
            repeated("x=1&x=2&token=t"),
            None,
            "unknown keys are ignored"
        );
        assert_eq!(repeated("token=t&userId=a"), None);
    }

    #[test]
    fn unknown_platforms_share_one_label() {
        assert_eq!(platform_label("iOS"), "ios");
        assert_eq!(platform_label("web"), "web");
        assert_eq!(platform_label("x-1234"), "other");
    }
}
