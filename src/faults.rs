//! Named fault points, for fault-injection tests: a crash or a stall lands exactly
//! where it hurts (between a seq claim and the message write, between the write and
//! the offset commit) instead of wherever a timer happens to end.
//!
//! `FERRY_FAULTS` lists the points to arm, `point=action[@n]` separated by commas:
//! - `abort`: the process dies by SIGKILL, as `kill -9` would (no drain, no flush);
//! - `pause:<ms>`: the task that reached the point stalls that long, holding what
//!   it has claimed, like a process frozen by a GC pause or a stopped VM;
//! - `@n`: act on the nth time the point is reached (default 1), once.
//!
//! Reaching an armed point logs `fault point reached` with its name first, so a test
//! can observe the moment and strike then. Unset (always, outside tests), every
//! point is one relaxed load of an empty list.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that arms fault points.
const ENV: &str = "FERRY_FAULTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Abort,
    Pause(Duration),
}

#[derive(Debug)]
struct Rule {
    point: String,
    action: Action,
    at: u64,
    hits: AtomicU64,
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| match std::env::var(ENV) {
        Ok(spec) => parse(&spec).unwrap_or_else(|e| {
            // Only tests set this; a typo must not silently disarm the fault.
            eprintln!("{ENV}: {e}");
            std::process::exit(2)
        }),
        Err(_) => Vec::new(),
    })
}

fn parse(spec: &str) -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (point, rest) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected point=action[@n]"))?;
        let (action, at) = match rest.split_once('@') {
            Some((a, n)) => (
                a,
                n.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{item:?}: @n must be a positive integer"))?,
            ),
            None => (rest, 1),
        };
        let action = match action.split_once(':') {
            None if action == "abort" => Action::Abort,
            Some(("pause", ms)) => Action::Pause(Duration::from_millis(
                ms.parse()
                    .map_err(|_| format!("{item:?}: pause:<milliseconds>"))?,
            )),
            _ => return Err(format!("{item:?}: action is abort or pause:<ms>")),
        };
        out.push(Rule {
            point: point.to_owned(),
            action,
            at,
            hits: AtomicU64::new(0),
        });
    }
    Ok(out)
}

/// Marks a named point; acts if `FERRY_FAULTS` armed it for this hit.
pub(crate) async fn point(name: &str) {
    for rule in rules().iter().filter(|r| r.point == name) {
        let hit = rule.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if hit != rule.at {
            continue;
        }
        tracing::warn!(point = name, hit, action = ?rule.action, "fault point reached");
        match rule.action {
            Action::Abort => die(),
            Action::Pause(d) => {
                tokio::time::sleep(d).await;
                tracing::warn!(point = name, hit, "fault point resumed");
            }
        }
    }
}

/// SIGKILL to ourselves: exactly what `kill -9` does, with no unsafe code.
fn die() -> ! {
    use std::io::Write as _;
    let _ = std::io::stderr().flush();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    // `kill` missing from PATH: the closest thing.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_actions_and_hit_numbers() {
        let r = parse("sequencer.claimed=abort@3, sequencer.written=pause:1500").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].point.as_str(), r[0].action, r[0].at),
            ("sequencer.claimed", Action::Abort, 3)
        );
        assert_eq!(
            (r[1].point.as_str(), r[1].action, r[1].at),
            (
                "sequencer.written",
                Action::Pause(Duration::from_millis(1500)),
                1
            )
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_what_it_cannot_act_on() {
        for bad in [
            "x",
            "x=explode",
            "x=abort@0",
            "x=abort@-1",
            "x=pause",
            "x=pause:soon",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
