//! Two pods on Kafka + Cassandra: sender and recipient on different pods, pushes go
//! only to the pods that hold the recipients, replacement and kicks cross pods.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_and_recipient_on_different_pods() {
    let c = Cluster::new(Backend::Kafka, "");
    let pa = c.start_with("pod-a", &[]);
    let pb_ = c.start_with("pod-b", &[]);
    let idle = c.start_with("pod-c", &[]);
    let (a, b) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{b}");
    let mut a1 = pa.connect(&a).await;
    let mut b1 = pb_.connect_device(&b, "android", "phone").await;
    // Presence travels through Kafka: wait until pod-a routes to pod-b.
    let mut delivered = false;
    for i in 0..40 {
        a1.send_text(&conv, &format!("probe {i}")).await.ok();
        if b1
            .wait(Duration::from_millis(500), |p| p.event == 0)
            .await
            .is_some()
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no push crossed pods");
    a1.send_text(&conv, "across pods").await.ok();
    // Later probes may still be on their way; wait for this very message.
    let deadline = std::time::Instant::now() + 10 * SEC;
    while !b1
        .messages(10 * SEC)
        .await
        .iter()
        .any(|m| text(m) == "across pods")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the message never crossed pods"
        );
    }
    // Every seq the recipient saw is stored, in order, on the other pod's view too.
    let max: u64 = a1.conv_seq(&conv).await.max_seq.parse().unwrap();
    let all = b1.sync(&conv, &(1..=max).collect::<Vec<_>>()).await;
    assert_eq!(all.len() as u64, max);
    assert!(
        all.windows(2)
            .all(|w| w[0].seq.parse::<u64>().unwrap() + 1 == w[1].seq.parse::<u64>().unwrap())
    );

    // The same device connecting on pod-a replaces the socket on pod-b.
    let _b2 = pa.connect_device(&b, "android", "phone").await;
    assert_eq!(
        b1.closed(15 * SEC).await,
        (1000, "duplicate connection".into())
    );

    // A kick through pod-b's API closes the socket living on pod-a.
    let mut a_web = pa.connect_device(&a, "web", "laptop").await;
    // pod-b routes the kick by presence: wait until it sees a on pod-a.
    eventually(15 * SEC, || async {
        pb_.presence(&a)
            .await
            .iter()
            .any(|p| p == "pod-a")
            .then_some(())
    })
    .await;
    let (s, body) = pb_
        .api(
            reqwest::Method::POST,
            &format!("/users/{a}/kick"),
            Some(serde_json::json!({"platform": "web"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(a_web.closed(15 * SEC).await, (1001, "kick".into()));

    // Pushes went to the pods holding the recipients, never to the idle pod.
    let records = |f: &Ferry| {
        let url = f.http("/metrics");
        async move {
            let m = reqwest::get(url).await.unwrap().text().await.unwrap();
            m.lines()
                .find(|l| l.starts_with("ferry_push_records_total"))
                .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    assert!(records(&pb_).await > 0.0);
    assert_eq!(records(&idle).await, 0.0, "the idle pod received pushes");
}

/// Records on the presence topic, summed over its partitions (`ferry topics describe`).
fn presence_records(c: &Cluster) -> u64 {
    let out = c.admin(&["topics", "describe"]);
    let name = c.topic("presence");
    out.lines()
        .skip_while(|l| {
            !l.split_whitespace()
                .any(|w| w.trim_end_matches(':') == name)
        })
        .skip(1)
        .take_while(|l| l.starts_with("  partition"))
        .map(|l| {
            l.split("high=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// Presence is kept alive by one heartbeat per pod, not by one record per user per
/// refresh: past several TTLs a live pod's users are still listed on the other pod
/// while the presence topic grew by a few heartbeats only; killed with -9, the pod's
/// users drop out of the other pod's view once its heartbeats are older than the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lives_by_the_pods_heartbeat_and_ends_with_the_pod() {
    let c = Cluster::new(Backend::Kafka, "[pipeline]\npresence_ttl_secs = 3\n");
    let pa = c.start_with("pod-a", &[]);
    let pb_ = c.start_with("pod-b", &[]);
    let users: Vec<String> = (0..20).map(|i| unique(&format!("hb{i}x"))).collect();
    let mut sockets = Vec::new();
    for u in &users {
        sockets.push(pb_.connect(u).await);
    }
    for u in &users {
        eventually(15 * SEC, || async {
            pa.presence(u)
                .await
                .iter()
                .any(|p| p == "pod-b")
                .then_some(())
        })
        .await;
    }
    let before = presence_records(&c);
    // Three TTLs: a refresh every second on each pod.
    tokio::time::sleep(9 * SEC).await;
    for u in &users {
        assert_eq!(
            pa.presence(u).await,
            ["pod-b"],
            "{u} went stale on a live pod"
        );
    }
    let grown = presence_records(&c) - before;
    // Two pods, about nine refreshes each; per-user refreshes would add 20 per refresh.
    assert!(
        (4..=40).contains(&grown),
        "{grown} presence records in 9 s for 20 users on two pods"
    );

    pb_.kill9();
    eventually(20 * SEC, || async {
        pa.presence(&users[0]).await.is_empty().then_some(())
    })
    .await;
    for u in &users {
        assert!(pa.presence(u).await.is_empty(), "{u} outlived its pod");
    }
    drop(sockets);
}
