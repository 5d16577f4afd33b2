//! Latency histograms: recorded in microseconds in each worker, shipped to the
//! coordinator as (value, count) pairs and merged there.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Up to one hour in microseconds, three significant digits.
pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub fn merge(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for (v, n) in pairs {
        let _ = h.record_n(*v, *n);
    }
}

/// The percentiles every row reports, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn summary(h: &Histogram<u64>) -> Summary {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Summary {
        count: h.len(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return write!(f, "-");
        }
        write!(
            f,
            "p50 {:.2} / p90 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}
