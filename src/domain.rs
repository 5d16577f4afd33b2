//! Domain types: identities, conversations, seqs and messages, parsed once at the edge.

use std::fmt;

use bytes::Bytes;

/// Longest user id, group id or notice name accepted anywhere.
const MAX_ID_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DomainError {
    #[error(
        "invalid id {0:?}: 1..=128 characters of letters, digits, '_', '.', '@', ':' or '=' (not \".\" or \"..\")"
    )]
    Id(String),
    #[error("invalid convId {0:?}: expected single:<a>-<b>, group:<groupId> or notice:<name>")]
    ConvId(String),
    #[error(
        "invalid seq {0:?}: expected a positive decimal integer without sign or leading zeros, at most 9223372036854775807"
    )]
    Seq(String),
    #[error("invalid serverMsgId {0:?}: expected <convId>-<seq>")]
    ServerMsgId(String),
}

fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | ':' | '=')
}

/// Longest piece of client input an error message quotes, bytes: enough to spot
/// the value, never a megabyte of it echoed back.
pub(crate) const QUOTE_BYTES: usize = 64;

/// `s` as an error message quotes it: at most [`QUOTE_BYTES`] (on a character
/// boundary), with the full length when cut.
pub(crate) fn quote(s: &str) -> String {
    if s.len() <= QUOTE_BYTES {
        return s.to_owned();
    }
    let mut end = QUOTE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

fn check_id(s: &str) -> Result<(), DomainError> {
    // "." and ".." would be path segments wherever an id becomes part of a path.
    if s.is_empty()
        || s.len() > MAX_ID_LEN
        || s == "."
        || s == ".."
        || !s.chars().all(valid_id_char)
    {
        return Err(DomainError::Id(quote(s)));
    }
    Ok(())
}

/// A user id. `-` is excluded so that `single:<a>-<b>` splits unambiguously.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct UserId(String);

impl UserId {
    pub(crate) fn parse(s: &str) -> Result<Self, DomainError> {
        check_id(s)?;
        Ok(Self(s.to_owned()))
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation. Single conversations hold their two users ordered byte-wise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ConvId {
    Single(UserId, UserId),
    Group(String),
    Notice(String),
}

impl ConvId {
    /// Parses a convId; `single:b-a` is normalised to `single:a-b`.
    pub(crate) fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::ConvId(quote(s));
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "single" => {
                let (a, b) = rest.split_once('-').ok_or_else(bad)?;
                let a = UserId::parse(a).map_err(|_| bad())?;
                let b = UserId::parse(b).map_err(|_| bad())?;
                if a == b {
                    return Err(bad());
                }
                Ok(Self::single(a, b))
            }
            "group" => {
                check_id(rest).map_err(|_| bad())?;
                Ok(Self::Group(rest.to_owned()))
            }
            "notice" => {
                check_id(rest).map_err(|_| bad())?;
                Ok(Self::Notice(rest.to_owned()))
            }
            _ => Err(bad()),
        }
    }

    pub(crate) fn single(a: UserId, b: UserId) -> Self {
        if a <= b {
            Self::Single(a, b)
        } else {
            Self::Single(b, a)
        }
    }

    pub(crate) fn group_id(&self) -> Option<&str> {
        match self {
            Self::Group(g) => Some(g),
            _ => None,
        }
    }
}

impl fmt::Display for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(a, b) => write!(f, "single:{a}-{b}"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::Notice(n) => write!(f, "notice:{n}"),
        }
    }
}

/// A per-conversation sequence number; the first message of a conversation has seq 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct Seq(pub(crate) u64);

impl Seq {
    pub(crate) fn parse(s: &str) -> Result<Self, DomainError> {
        // Canonical decimal only: "+1", "01" and " 1" are refused (u64's parser takes
        // the first), and nothing above what the CQL store's bigint holds.
        let canonical = !s.is_empty()
            && s.len() <= 19
            && s.bytes().all(|b| b.is_ascii_digit())
            && !s.starts_with('0');
        match s.parse::<u64>() {
            Ok(n) if canonical && n <= MAX_SEQ => Ok(Self(n)),
            _ => Err(DomainError::Seq(quote(s))),
        }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `<convId>-<seq>`: the server's id of a stored message.
/// The largest seq (and minSeq) ferry stores: the CQL schema holds seqs as bigint.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

pub(crate) fn server_msg_id(conv: &ConvId, seq: Seq) -> String {
    format!("{conv}-{seq}")
}

/// Splits a serverMsgId at its last `-` into conversation and seq.
pub(crate) fn parse_server_msg_id(s: &str) -> Result<(ConvId, Seq), DomainError> {
    let bad = || DomainError::ServerMsgId(quote(s));
    let (conv, seq) = s.rsplit_once('-').ok_or_else(bad)?;
    Ok((
        ConvId::parse(conv).map_err(|_| bad())?,
        Seq::parse(seq).map_err(|_| bad())?,
    ))
}

/// Per-message flags, as clients set them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsgOptions {
    pub storage_for_server: bool,
    pub storage_for_client: bool,
    pub need_decrypt: bool,
    pub offline_push: bool,
    pub update_conv_msg: bool,
    pub update_unread_count: bool,
}

impl MsgOptions {
    /// What a message without options means: store it and count it.
    pub fn stored() -> Self {
        Self {
            storage_for_server: true,
            storage_for_client: true,
            update_conv_msg: true,
            update_unread_count: true,
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfflinePush {
    pub title: String,
    pub content: String,
    pub payload: String,
}

/// One message. `seq`, `server_msg_id` and `server_time_ms` are owned by the sequencer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub client_msg_id: String,
    pub server_msg_id: String,
    pub client_time_ms: i64,
    pub server_time_ms: i64,
    pub sender_id: String,
    pub sender_info: Bytes,
    pub conv_id: String,
    pub at_users: Vec<String>,
    pub content_type: i32,
    pub content: Bytes,
    pub seq: u64,
    pub options: MsgOptions,
    pub offline_push: Option<OfflinePush>,
    pub ext: Bytes,
}

impl Message {
    /// Equality of what the sender wrote, ignoring what the server stamped:
    /// a retry carries the same content, an edit or revoke a different one.
    pub(crate) fn same_content(&self, other: &Message) -> bool {
        self.content_type == other.content_type
            && self.content == other.content
            && self.ext == other.ext
            && self.at_users == other.at_users
    }

    /// The placeholder answered for a seq that does not exist.
    pub(crate) fn placeholder(conv: &ConvId, seq: Seq) -> Self {
        Self {
            server_msg_id: server_msg_id(conv, seq),
            conv_id: conv.to_string(),
            seq: seq.0,
            ..Self::default()
        }
    }
}

/// A server-originated notification for one user, pending until acked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) conv_id: String,
    pub(crate) notice_id: String,
    pub(crate) unread_count: i32,
    pub(crate) unread_absolute: bool,
    pub(crate) create_time_ms: i64,
    pub(crate) title: String,
    pub(crate) content_type: i32,
    pub(crate) content: Bytes,
    pub(crate) storage_for_client: bool,
    pub(crate) update_conv_msg: bool,
    pub(crate) online_push_once: bool,
    pub(crate) ext: Bytes,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_conv_is_normalised() {
        let c = ConvId::parse("single:bob_02-alice_01").unwrap();
        assert_eq!(c.to_string(), "single:alice_01-bob_02");
        assert_eq!(ConvId::parse("single:alice_01-bob_02").unwrap(), c);
    }

    #[test]
    fn bad_conv_ids_are_rejected() {
        for s in [
            "",
            "single:",
            "single:a",
            "single:a-a",
            "single:a-b-c",
            "group:",
            "group:a b",
            "dm:a-b",
            "notice:",
        ] {
            assert!(ConvId::parse(s).is_err(), "{s:?} accepted");
        }
        assert_eq!(ConvId::parse("group:g1").unwrap().group_id(), Some("g1"));
        assert!(matches!(
            ConvId::parse("notice:FriendNotice").unwrap(),
            ConvId::Notice(_)
        ));
    }

    #[test]
    fn server_msg_id_round_trips() {
        let c = ConvId::parse("single:a-b").unwrap();
        let id = server_msg_id(&c, Seq(17));
        assert_eq!(id, "single:a-b-17");
        assert_eq!(parse_server_msg_id(&id).unwrap(), (c, Seq(17)));
        assert!(parse_server_msg_id("group:g1-0").is_err());
        assert!(parse_server_msg_id("group:g1").is_err());
    }

    #[test]
    fn seqs_are_positive() {
        assert_eq!(Seq::parse("3").unwrap(), Seq(3));
        assert!(Seq::parse("0").is_err());
        assert!(Seq::parse("-1").is_err());
        assert!(Seq::parse("x").is_err());
    }
}
