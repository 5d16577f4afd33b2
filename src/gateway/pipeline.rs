//! A connection's SendMsgList requests, pipelined: each is started (validated and put
//! in line on the log) in arrival order, up to `depth` wait for durability at once,
//! and their answers go out in arrival order. One request at a time would cap a
//! connection at one append round trip per request; the log keeps the order anyway,
//! because it is fixed when a request is put in line, not when it becomes durable.

use std::future::Future;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;

/// SendMsgList requests of one connection waiting for durability at once (besides
/// the queue in front of them): enough to fill linger-sized producer batches from
/// one busy connection, small enough that one connection holds little memory.
pub(crate) const DEPTH: usize = 32;

/// Runs until `rx` closes and every started request is answered. `start` puts one
/// request in line and returns the wait for its answer; `answer` sends it.
pub(crate) async fn run<T, S, A, R>(
    mut rx: mpsc::Receiver<T>,
    depth: usize,
    mut start: impl FnMut(T) -> S,
    mut answer: impl FnMut(R),
) where
    S: Future<Output = A>,
    A: Future<Output = R>,
{
    let depth = depth.max(1);
    let mut waiting = FuturesOrdered::new();
    loop {
        tokio::select! {
            // Answers first: a done append is acked before the next one starts.
            biased;
            Some(r) = waiting.next(), if !waiting.is_empty() => answer(r),
            next = rx.recv(), if waiting.len() < depth => match next {
                Some(req) => waiting.push_back(start(req).await),
                None => break,
            },
        }
    }
    while let Some(r) = waiting.next().await {
        answer(r);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// Requests whose waits end only when the test says so.
    struct Harness {
        requests: mpsc::Sender<u32>,
        started: mpsc::UnboundedReceiver<(u32, oneshot::Sender<()>)>,
        answered: mpsc::UnboundedReceiver<u32>,
    }

    fn harness(depth: usize) -> Harness {
        let (requests, rx) = mpsc::channel(64);
        let (started_tx, started) = mpsc::unbounded_channel();
        let (answered_tx, answered) = mpsc::unbounded_channel();
        tokio::spawn(run(
            rx,
            depth,
            move |n: u32| {
                let (done, wait) = oneshot::channel::<()>();
                started_tx.send((n, done)).unwrap();
                // Put in line at once; the returned wait ends when the test says.
                std::future::ready(async move {
                    let _ = wait.await;
                    n
                })
            },
            move |n| answered_tx.send(n).unwrap(),
        ));
        Harness {
            requests,
            started,
            answered,
        }
    }

    async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<T> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn later_requests_start_before_earlier_ones_are_durable_and_answers_keep_order() {
        let mut h = harness(8);
        for n in 0..5 {
            h.requests.send(n).await.unwrap();
        }
        // All five are put in line while none is durable yet, in arrival order.
        let mut dones = Vec::new();
        for n in 0..5 {
            let (got, done) = next(&mut h.started)
                .await
                .unwrap_or_else(|| panic!("request {n} was not started while {dones:?} wait"));
            assert_eq!(got, n, "requests start in arrival order");
            dones.push(done);
        }
        // Durable in reverse order; answered in arrival order all the same.
        for done in dones.into_iter().rev() {
            done.send(()).unwrap();
        }
        for n in 0..5 {
            assert_eq!(next(&mut h.answered).await, Some(n));
        }
    }

    #[tokio::test]
    async fn at_most_depth_wait_at_once() {
        let mut h = harness(2);
        for n in 0..3 {
            h.requests.send(n).await.unwrap();
        }
        let (_, first) = next(&mut h.started).await.unwrap();
        let (_, _second) = next(&mut h.started).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), h.started.recv())
                .await
                .is_err(),
            "a third request started while two were waiting"
        );
        first.send(()).unwrap();
        assert_eq!(next(&mut h.answered).await, Some(0));
        assert_eq!(next(&mut h.started).await.map(|(n, _)| n), Some(2));
    }

    #[tokio::test]
    async fn closing_answers_what_was_started() {
        let mut h = harness(4);
        h.requests.send(7).await.unwrap();
        let (_, done) = next(&mut h.started).await.unwrap();
        drop(h.requests);
        done.send(()).unwrap();
        assert_eq!(next(&mut h.answered).await, Some(7));
        assert_eq!(next(&mut h.answered).await, None, "the worker ends");
    }
}
