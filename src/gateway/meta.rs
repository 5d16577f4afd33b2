//! A connection's metadata (networkUsed, deviceModel, osVersion, appVersion,
//! language): kept for the socket's whole life and forwarded to CustomRequest
//! upstreams, so it is packed into one allocation instead of a `Vec` of `String`
//! pairs (two allocations per entry and spare capacity: ≈ 440 bytes per socket).

/// The query parameters kept as metadata, in the order they are packed.
pub(crate) const KEYS: [&str; 5] = [
    "networkUsed",
    "deviceModel",
    "osVersion",
    "appVersion",
    "language",
];

/// Packed as `[key index: u8][value length: u16 LE][value bytes]` per entry.
#[derive(Debug, Default)]
pub(crate) struct Meta(Box<[u8]>);

impl Meta {
    /// Packs `entries`; keys outside `KEYS` and values longer than `u16::MAX` bytes
    /// (the session refuses values over 256 bytes before this) are left out.
    pub(crate) fn pack<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = Vec::new();
        for (k, v) in entries {
            let (Some(i), Ok(len)) = (
                KEYS.iter().position(|key| *key == k),
                u16::try_from(v.len()),
            ) else {
                continue;
            };
            out.push(i as u8);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        Self(out.into_boxed_slice())
    }

    /// The entries, in the order packed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            let (&i, tail) = rest.split_first()?;
            let (len, tail) = tail.split_first_chunk::<2>()?;
            let len = u16::from_le_bytes(*len) as usize;
            let (value, tail) = tail.split_at_checked(len)?;
            rest = tail;
            // Packed from a `&str`, so always UTF-8.
            Some((
                KEYS[i as usize],
                std::str::from_utf8(value).unwrap_or_default(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_known_keys_and_reads_them_back_in_order() {
        let long = "x".repeat(300);
        let m = Meta::pack([
            ("language", "zh-CN"),
            ("token", "secret"),
            ("networkUsed", ""),
            ("appVersion", long.as_str()),
        ]);
        let got: Vec<_> = m.iter().collect();
        assert_eq!(
            got,
            [
                ("language", "zh-CN"),
                ("networkUsed", ""),
                ("appVersion", long.as_str())
            ]
        );
        assert_eq!(Meta::default().iter().count(), 0);
    }
}
