//! Server pings: a client that never sends a frame of its own, but answers pings
//! (as every browser does), outlives the idle timeout many times over.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_answers_pings_stays_connected() {
    let c = Cluster::new(Backend::Embedded, "[session]\nidle_timeout_secs = 2\n");
    let f = c.start("pod-a");
    let mut listener = f.connect("alice").await;
    // Reading answers the server's pings (tungstenite sends the pong); nothing else
    // is sent for three idle timeouts.
    let nothing = listener
        .wait(std::time::Duration::from_millis(6500), |_| false)
        .await;
    assert!(nothing.is_none());
    // Still open: a closed socket could not answer this.
    assert_eq!(listener.conv_seq("single:alice-bob").await.max_seq, "0");
}
