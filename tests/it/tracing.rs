//! One trace per message in a real Jaeger: from the WebSocket request through Kafka,
//! the sequencer and the store to the push on another pod.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn otlp() -> String {
    std::env::var("FERRY_TEST_OTLP").unwrap_or_else(|_| "http://127.0.0.1:4317".into())
}

fn jaeger() -> String {
    std::env::var("FERRY_TEST_JAEGER_QUERY").unwrap_or_else(|_| "http://127.0.0.1:16686".into())
}

/// The chain every delivered message's trace must show, in start order.
const CHAIN: [&str; 7] = [
    "ws SendMsgList",
    "log append",
    "sequence",
    "store write",
    "push route",
    "push deliver",
    "push socket",
];

/// A trace that holds the whole chain in order, with the push on another process.
fn complete(trace: &Value) -> bool {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let mut starts = Vec::new();
    for name in CHAIN {
        match spans
            .iter()
            .filter(|s| s["operationName"] == name)
            .map(|s| s["startTime"].as_u64().unwrap_or(0))
            .min()
        {
            Some(t) => starts.push(t),
            None => return false,
        }
    }
    let ordered = starts.windows(2).all(|w| w[0] <= w[1]);
    let process = |name: &str| {
        spans
            .iter()
            .find(|s| s["operationName"] == name)
            .map(|s| s["processID"].clone())
    };
    ordered && process("ws SendMsgList") != process("push deliver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_message_across_pods_into_jaeger() {
    let service = unique("ferry-it-");
    let c = Cluster::new(
        Backend::Kafka,
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"{service}\"\n",
            otlp()
        ),
    );
    let pa = c.start_with("pod-a", &[]);
    let pb_ = c.start_with("pod-b", &[]);
    let (a, b) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{b}");
    let mut a1 = pa.connect(&a).await;
    let mut b1 = pb_.connect(&b).await;
    let mut crossed = false;
    for i in 0..40 {
        a1.send_text(&conv, &format!("traced {i}")).await.ok();
        if b1
            .wait(Duration::from_millis(500), |p| p.event == 0)
            .await
            .is_some()
        {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no push crossed pods");

    let url = format!(
        "{}/api/traces?service={service}&limit=100&lookback=1h",
        jaeger()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let body: Value = match reqwest::get(&url).await {
            Ok(r) => {
                serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null)
            }
            Err(e) => panic!(
                "Jaeger query API unreachable at {} ({e}); start it with scripts/services/services.sh start jaeger",
                jaeger()
            ),
        };
        let traces = body["data"].as_array().cloned().unwrap_or_default();
        if traces.iter().any(complete) {
            // The token never reaches a span.
            assert!(!body.to_string().contains(&token(&a)[..40]));
            return;
        }
        if std::time::Instant::now() > deadline {
            let names: Vec<Vec<String>> = traces
                .iter()
                .map(|t| {
                    t["spans"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["operationName"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .collect();
            panic!("no complete trace in Jaeger for {service}; traces seen: {names:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
