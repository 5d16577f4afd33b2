//! A pod stopped right after it became ready (a rollout that changes its mind, a
//! crash-looping replica's SIGTERM) hands its Kafka partitions back at once: the
//! remaining pod owns every partition of every group again long before the stopped
//! pod's session could have timed out, so no conversation waits for the session
//! timeout to be sequenced.

use std::time::{Duration, Instant};

use crate::support::*;

/// `msglog/kafka/consumer.rs`: the group consumers' `session.timeout.ms` and
/// `heartbeat.interval.ms`. A member that stops without leaving the group keeps its
/// partitions until its session times out, at least the timeout less one heartbeat
/// interval after it stopped; a member that leaves hands them over at once.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

const PARTITIONS: usize = 4;

/// `ferry_kafka_assigned_partitions` of `group` on `f`.
async fn assigned(f: &Ferry, group: &str) -> Option<usize> {
    let want = format!("ferry_kafka_assigned_partitions{{group=\"{group}\"}} ");
    f.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&want)?.trim().parse::<f64>().ok())
        .map(|v| v as usize)
}

async fn owns_all(f: &Ferry, group: &str, within: Duration) -> Result<Duration, usize> {
    let start = Instant::now();
    loop {
        let n = assigned(f, group).await.unwrap_or(0);
        if n == PARTITIONS {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            return Err(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_stopped_right_after_it_is_ready_hands_its_partitions_back_at_once() {
    let c = Cluster::new(
        Backend::Kafka,
        &format!("[kafka]\npartitions = {PARTITIONS}\n"),
    );
    // The sequencer's group id: the topic prefix and the role (`Topics::group`).
    let group = c.topic("sequencer");
    let a = c.start_with("pod-a", &[]);
    a.wait_ready();
    owns_all(&a, &group, 30 * SEC)
        .await
        .unwrap_or_else(|n| panic!("pod-a alone owns {n} of {PARTITIONS} partitions"));
    let (x, y) = (unique("x"), unique("y"));
    let conv = if x < y {
        format!("single:{x}-{y}")
    } else {
        format!("single:{y}-{x}")
    };
    let mut x1 = a.connect(&x).await;
    let mut y1 = a.connect(&y).await;
    // Before the stopped pod's session could have expired.
    let bound = SESSION_TIMEOUT - HEARTBEAT_INTERVAL;
    for round in 0..3 {
        let b = c.start_with("pod-b", &[]);
        b.wait_ready();
        let stopped = tokio::task::block_in_place(|| b.stop());
        assert!(stopped.success(), "round {round}: pod-b exited {stopped}");
        match owns_all(&a, &group, bound).await {
            Ok(took) => {
                eprintln!("round {round}: pod-a owns every partition {took:?} after pod-b exited")
            }
            Err(n) => panic!(
                "round {round}: {bound:?} after pod-b exited, pod-a owns {n} of {PARTITIONS} partitions (waiting for pod-b's session to time out)"
            ),
        }
        // And a message sent now is sequenced and pushed.
        let text_ = format!("after round {round}");
        x1.send_text(&conv, &text_).await.ok();
        let got = y1.collect_messages(1, 15 * SEC).await;
        assert_eq!(text(&got[0]), text_);
    }
    drop((x1, y1));
    assert!(a.stop().success());
}
