//! What the sequencer's durability horizon cost in the matrix, per phase, from the
//! sequencer pods' /metrics: how many records were applied and held back (their
//! offsets not yet committed: a restart reads them again), how many records a rewind
//! read again after the database lost its connections, and how many records a
//! sequencer found already applied (the window re-applied after a restart, a
//! rebalance or a rewind).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Pods;

const HELD: &str = "ferry_sequencer_held_back_records";
const REWINDS: &str = "ferry_sequencer_rewinds_total";
const READ_AGAIN: &str = "ferry_sequencer_reapplied_records_total";
const FOUND: &str = "ferry_sequencer_found_applied_total";

#[derive(Default)]
pub(super) struct Cost {
    /// Per pod, the counters at the last sample (a restarted pod starts from 0).
    last: BTreeMap<String, [f64; 3]>,
    /// Per phase: held back now, rewinds, records read again, found applied.
    rows: Vec<(&'static str, [f64; 4])>,
}

fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Cost {
    /// The sequencer pods' metrics now, as the row of `phase`.
    pub(super) async fn sample(&mut self, pods: &Pods, phase: &'static str) {
        let urls: Vec<(String, String)> = {
            let pods = pods.pods.lock().unwrap();
            pods.iter()
                .filter(|p| p.gw.is_none())
                .filter_map(|p| Some((p.name.clone(), p.ferry.as_ref()?.http("/metrics"))))
                .collect()
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut row = [0.0; 4];
        for (pod, url) in urls {
            let Ok(r) = http.get(&url).send().await else {
                continue;
            };
            let text = r.text().await.unwrap_or_default();
            row[0] += value(&text, HELD);
            let now = [
                value(&text, REWINDS),
                value(&text, READ_AGAIN),
                value(&text, FOUND),
            ];
            let last = self.last.insert(pod, now).unwrap_or_default();
            for k in 0..3 {
                // A counter below its last value belongs to a restarted pod.
                row[k + 1] += if now[k] >= last[k] {
                    now[k] - last[k]
                } else {
                    now[k]
                };
            }
        }
        self.rows.push((phase, row));
    }

    pub(super) fn report(&self) {
        eprintln!(
            "matrix: | phase | held back at its end | rewinds | records read again by a rewind | records found already applied |"
        );
        eprintln!("matrix: |---|---|---|---|---|");
        for (phase, r) in &self.rows {
            eprintln!(
                "matrix: | {phase} | {} | {} | {} | {} |",
                r[0], r[1], r[2], r[3]
            );
        }
    }
}
