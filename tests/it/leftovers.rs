//! Tests delete what they create: a Kafka + Cassandra deployment's topics, consumer
//! groups and keyspace go when its `Cluster` is dropped (`support.rs`), so the shared
//! broker and database do not accumulate partitions and tables from run to run (a
//! broker carrying thousands of leftover partitions measured as saturated at a tenth
//! of its load). Removal is bounded in time and never fails a test: what could not
//! be removed is printed and left behind.

use std::time::{Duration, Instant};

use ferry::testkit::ScyllaSettings;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use crate::support::{Backend, Cluster, cql_addr, kafka_addr};

/// The whole removal, per deployment; a broker or database that is down costs this.
const BOUND: Duration = Duration::from_secs(20);

/// Deletes the topics and groups named under `prefix` and drops `keyspace`.
pub fn remove(kafka: &str, cql: &str, prefix: &str, keyspace: &str) {
    let names = (
        kafka.to_owned(),
        cql.to_owned(),
        prefix.to_owned(),
        keyspace.to_owned(),
    );
    // Its own thread and runtime: called from `Drop`, inside or outside a runtime.
    let done = std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (kafka, cql, prefix, keyspace) = &names;
        rt.block_on(async {
            tokio::time::timeout(BOUND, async {
                let kafka = remove_kafka(kafka, prefix).await;
                let cql = drop_keyspace(cql, keyspace).await;
                kafka.and(cql)
            })
            .await
            .map_err(|_| format!("not done within {BOUND:?}"))?
        })
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("cleanup: {prefix}* / {keyspace} left behind: {e}"),
        Err(_) => eprintln!("cleanup: {prefix}* / {keyspace} left behind: panicked"),
    }
}

fn admin(kafka: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .map_err(|e| e.to_string())
}

/// Topics and consumer groups whose names start with `prefix`.
fn named(kafka: &str, prefix: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let a = admin(kafka)?;
    let md = a
        .inner()
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let topics = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    let groups = a
        .inner()
        .fetch_group_list(None, Duration::from_secs(5))
        .map_err(|e| e.to_string())?
        .groups()
        .iter()
        .map(|g| g.name().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    Ok((topics, groups))
}

async fn remove_kafka(kafka: &str, prefix: &str) -> Result<(), String> {
    let (topics, groups) = {
        let (kafka, prefix) = (kafka.to_owned(), prefix.to_owned());
        tokio::task::spawn_blocking(move || named(&kafka, &prefix))
            .await
            .map_err(|e| e.to_string())??
    };
    let a = admin(kafka)?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut failed = Vec::new();
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        for r in a
            .delete_topics(&names, &opts)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Err((t, e)) = r {
                failed.push(format!("topic {t}: {e}"));
            }
        }
    }
    if !groups.is_empty() {
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        // A group whose members are still leaving refuses (non-empty); with no
        // offsets' owner left it expires with the broker's offsets retention.
        let _ = a.delete_groups(&names, &opts).await;
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("; ")),
    }
}

async fn session(cql: &str) -> Result<scylla::client::session::Session, String> {
    scylla::client::session_builder::SessionBuilder::new()
        .known_node(cql)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// ferry's own keyspace drop (the one the store contract tests use).
async fn drop_keyspace(cql: &str, keyspace: &str) -> Result<(), String> {
    let settings = ScyllaSettings {
        nodes: vec![cql.to_owned()],
        keyspace: keyspace.to_owned(),
        replication: 1,
        username: None,
        password: None,
    };
    ferry::testkit::drop_keyspace(&settings)
        .await
        .map_err(|e| e.to_string())
}

async fn keyspace_exists(keyspace: &str) -> bool {
    let s = session(&cql_addr()).await.unwrap();
    let r = s
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    r.rows_num() > 0
}

fn topics_under(prefix: &str) -> Vec<String> {
    named(&kafka_addr(), prefix).unwrap().0
}

/// A deployment that ran leaves no topic, group or keyspace once dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_deployment_leaves_no_topics_or_keyspace() {
    let c = Cluster::new(Backend::Kafka, "");
    let (prefix, keyspace) = (c.topic(""), c.keyspace().to_owned());
    {
        let f = c.start("pod");
        let mut a = f.connect("alice").await;
        let _b = f.connect("bob").await;
        a.send_text("single:alice-bob", "before the cleanup").await;
    }
    let left = {
        let p = prefix.clone();
        tokio::task::spawn_blocking(move || topics_under(&p))
            .await
            .unwrap()
    };
    assert!(
        left.iter().any(|t| t.ends_with("inbound")),
        "the deployment created its topics: {left:?}"
    );
    assert!(keyspace_exists(&keyspace).await);

    drop(c);

    // Kafka removes deleted topics from its metadata shortly after answering.
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let p = prefix.clone();
        let left = tokio::task::spawn_blocking(move || topics_under(&p))
            .await
            .unwrap();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(left, Vec::<String>::new(), "topics left under {prefix}");
    assert!(
        !keyspace_exists(&keyspace).await,
        "keyspace {keyspace} left"
    );
}
