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
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = t.get(r).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = &t[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let ms: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = ms.parse().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let hh: i64 = o[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = o[4..6].parse().map_err(|_| bad())?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (hh * 60 + mm)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Ok(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A duration in milliseconds: ISO 8601 (`PT1H`, `P1DT12H`, `PT0.5S`) or short
/// units (`1h30m`, `2d`, `45s`, `500ms`).
pub(crate) fn parse_duration(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Duration(s.to_owned());
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    if let Some(iso) = upper.strip_prefix('P') {
        let (date, time) = match iso.split_once('T') {
            Some((d, t)) => (d, t),
            None => (iso, ""),
        };
        let mut total = 0f64;
        for (part, units) in [
            (date, &[('W', 604_800_000f64), ('D', 86_400_000f64)][..]),
            (
                time,
                &[('H', 3_600_000f64), ('M', 60_000f64), ('S', 1000f64)][..],
            ),
        ] {
            let mut num = String::new();
            for c in part.chars() {
                if c.is_ascii_digit() || c == '.' {
                    num.push(c);
                } else {
                    let unit = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?.1;
                    let n: f64 = num.parse().map_err(|_| bad())?;
                    total += n * unit;
                    num.clear();
                }
            }
            if !num.is_empty() {
                return Err(bad());
            }
        }
        if upper == "P" || upper.ends_with('T') {
            return Err(bad());
        }
        return Ok(total as i64);
    }
    let mut total = 0i64;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
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
        for bad in ["", "P", "PT", "1x", "h", "PT1X"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
