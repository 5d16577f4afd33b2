//! Instants and durations as operators type them: RFC 3339 or epoch milliseconds,
//! ISO 8601 (`PT1H30M`) or short (`1h30m`) durations.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TimeError {
    #[error(
        "invalid time {0:?}: expected RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00) or epoch milliseconds"
    )]
    Instant(String),
    #[error("invalid duration {0:?}: expected e.g. PT1H, P1DT2H, 90m, 1h30m, 2d, 45s")]
    Duration(String),
}

/// Milliseconds since the Unix epoch.
pub(crate) fn parse_instant(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Instant(s.to_owned());
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| bad());
    }
    // An offset (`Z` or `±HH:MM`) is required: a bare local time names no instant.
    let ts: jiff::Timestamp = t.parse().map_err(|_| bad())?;
    Ok(ts.as_millisecond())
}

/// A duration in milliseconds: ISO 8601 (`PT1H`, `P1DT12H`, `PT0.5S`) or short
/// units (`1h30m`, `2d`, `45s`, `500ms`). A day is 24 hours: these are offsets from
/// now, not calendar arithmetic.
pub(crate) fn parse_duration(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Duration(s.to_owned());
    let span: jiff::Span = s.trim().parse().map_err(|_| bad())?;
    let ms = span
        .total((
            jiff::Unit::Millisecond,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|_| bad())?;
    Ok(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_instant("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_instant("2023-11-14T23:13:20.5+01:00"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(parse_instant("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        // The separators and case the format allows.
        for other in ["2023-11-14 22:13:20Z", "2023-11-14t22:13:20z"] {
            assert_eq!(parse_instant(other), Ok(1_700_000_000_000), "{other}");
        }
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1H"), Ok(3_600_000));
        assert_eq!(parse_duration("P1DT2H30M"), Ok(95_400_000));
        assert_eq!(parse_duration("PT0.5S"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("pt1h"), Ok(3_600_000));
        assert_eq!(parse_duration("P1W"), Ok(604_800_000));
        assert_eq!(parse_duration("1w"), Ok(604_800_000));
        assert_eq!(parse_duration(" 45s "), Ok(45_000));
        for bad in ["", "P", "PT", "1x", "h", "PT1X"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
