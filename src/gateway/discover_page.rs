//! DiscoverConvs' cursor and paging, pure (docs/conversation-discovery.md, "Cursor
//! semantics"): which of a user's conversations an answer lists and the cursor after
//! it, given each conversation's position in the inbound log, the caller's cursor and
//! the horizon below which every record is applied.

/// The longest cursor accepted, bytes (checked before it is parsed).
pub(crate) const MAX_CURSOR_BYTES: usize = 16384;

const PREFIX: &str = "d1";

/// Per inbound partition, the offset below which every change was answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor(pub(crate) Vec<i64>);

impl Cursor {
    /// Parses a cursor of at most `partitions` partitions; empty: from the beginning.
    pub(crate) fn parse(s: &str, partitions: usize) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        if s.len() > MAX_CURSOR_BYTES {
            return Err(format!("longer than {MAX_CURSOR_BYTES} bytes"));
        }
        let mut parts = s.split('.');
        if parts.next() != Some(PREFIX) {
            return Err("not a cursor from a DiscoverConvs answer".into());
        }
        let offsets = parts
            .map(|o| match o.parse::<i64>() {
                Ok(n) if n >= 0 && !o.starts_with('+') => Ok(n),
                _ => Err("not a cursor from a DiscoverConvs answer".to_owned()),
            })
            .collect::<Result<Vec<i64>, String>>()?;
        if offsets.len() > partitions {
            return Err(format!(
                "it names {} partitions; the inbound topic has {partitions}",
                offsets.len()
            ));
        }
        Ok(Self(offsets))
    }

    fn at(&self, partition: usize) -> i64 {
        self.0.get(partition).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PREFIX)?;
        for o in &self.0 {
            write!(f, ".{o}")?;
        }
        Ok(())
    }
}

/// A conversation that may be listed, at its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate<T> {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) conv: String,
    pub(crate) item: T,
}

/// One answer: what it lists, the cursor after it, and whether more is ready.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Page<T> {
    pub(crate) listed: Vec<Candidate<T>>,
    pub(crate) next: Cursor,
    pub(crate) more: bool,
}

/// Lists, in position order, at most `limit` (at least 1) of the candidates at or
/// after `cursor` and below `horizon` (indexed by partition), and the cursor that
/// moves past exactly those: to the horizon for partitions listed whole, just past
/// the last listed position in the partition where the page ended, unchanged after
/// it. A position is a record's, so no two candidates share one.
pub(crate) fn page<T>(
    candidates: Vec<Candidate<T>>,
    cursor: &Cursor,
    horizon: &[i64],
    limit: usize,
) -> Page<T> {
    let limit = limit.max(1);
    let mut ready: Vec<Candidate<T>> = candidates
        .into_iter()
        .filter(|c| {
            usize::try_from(c.partition).is_ok_and(|p| {
                p < horizon.len() && c.offset >= cursor.at(p) && c.offset < horizon[p]
            })
        })
        .collect();
    ready.sort_by(|a, b| (a.partition, a.offset, &a.conv).cmp(&(b.partition, b.offset, &b.conv)));
    let more = ready.len() > limit;
    ready.truncate(limit);
    let mut next: Vec<i64> = (0..horizon.len())
        .map(|p| cursor.at(p).max(horizon[p]))
        .collect();
    if more && let Some(last) = ready.last() {
        let lp = last.partition as usize;
        next[lp] = last.offset + 1;
        for (p, o) in next.iter_mut().enumerate().skip(lp + 1) {
            *o = cursor.at(p);
        }
    }
    Page {
        listed: ready,
        next: Cursor(next),
        more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: i32, o: i64, conv: &str) -> Candidate<()> {
        Candidate {
            partition: p,
            offset: o,
            conv: conv.into(),
            item: (),
        }
    }

    fn convs(p: &Page<()>) -> Vec<&str> {
        p.listed.iter().map(|c| c.conv.as_str()).collect()
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor(vec![0, 17, 3]);
        assert_eq!(c.to_string(), "d1.0.17.3");
        assert_eq!(Cursor::parse("d1.0.17.3", 3).unwrap(), c);
        assert_eq!(Cursor::parse("", 3).unwrap(), Cursor::default());
        for bad in ["x", "d2.1", "d1.-1", "d1.a", "d1.+1", "d1..1", "d1.1.2.3.4"] {
            assert!(Cursor::parse(bad, 3).is_err(), "{bad:?} accepted");
        }
        let long = format!("d1{}", ".0".repeat(MAX_CURSOR_BYTES));
        assert!(
            Cursor::parse(&long, usize::MAX)
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn a_page_lists_in_position_order_up_to_the_horizon() {
        let all = vec![
            c(1, 5, "e"),
            c(0, 9, "b"),
            c(0, 2, "a"),
            c(1, 1, "d"),
            c(0, 20, "late"),
        ];
        let p = page(all, &Cursor::default(), &[10, 6], 10);
        assert_eq!(convs(&p), ["a", "b", "d", "e"]);
        assert_eq!(p.next, Cursor(vec![10, 6]));
        assert!(!p.more);
    }

    #[test]
    fn paging_neither_skips_nor_repeats_across_a_change() {
        let horizon = [100, 100];
        let mut all = vec![c(0, 1, "a"), c(0, 2, "b"), c(1, 3, "c"), c(1, 4, "d")];
        let first = page(all.clone(), &Cursor::default(), &horizon, 3);
        assert_eq!(convs(&first), ["a", "b", "c"]);
        assert_eq!(first.next, Cursor(vec![100, 4]));
        assert!(first.more);
        // "a" (listed) and "d" (not yet) change, the horizon moves past both.
        all[0].offset = 150;
        all[3].offset = 160;
        let second = page(all, &first.next, &[200, 200], 3);
        assert_eq!(convs(&second), ["a", "d"]);
        assert!(!second.more);
        assert_eq!(second.next, Cursor(vec![200, 200]));
    }

    #[test]
    fn a_page_that_ends_mid_partition_leaves_later_partitions_alone() {
        let all = vec![c(0, 1, "a"), c(0, 2, "b"), c(1, 3, "c")];
        let p = page(all, &Cursor(vec![0, 2]), &[10, 10], 1);
        assert_eq!(convs(&p), ["a"]);
        assert_eq!(p.next, Cursor(vec![2, 2]));
    }
}
