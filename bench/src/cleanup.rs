//! Benchmarks that start clean: a Kafka + Cassandra run uses a fresh topic prefix and
//! keyspace, and deletes them (topics, consumer groups, keyspace) when it ends, so a
//! later run does not pay for the partitions and tables earlier runs left behind.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use crate::servers::Backend;

/// How long each deletion may take; a run never waits longer than this per kind.
const BOUND: Duration = Duration::from_secs(30);

pub struct Fresh(Names);

#[derive(Clone)]
struct Names {
    brokers: String,
    prefix: String,
    cql: String,
    keyspace: String,
}

impl Fresh {
    pub fn of(backend: &Backend) -> Option<Self> {
        match backend {
            Backend::Kafka {
                brokers,
                cql,
                prefix,
                keyspace,
            } => Some(Self(Names {
                brokers: brokers.clone(),
                prefix: prefix.clone(),
                cql: cql.clone(),
                keyspace: keyspace.clone(),
            })),
            Backend::Embedded => None,
        }
    }
}

impl Names {
    async fn run(&self) -> anyhow::Result<(usize, usize)> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let md = admin.inner().fetch_metadata(None, BOUND)?;
        let topics: Vec<String> = md
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        let opts = AdminOptions::new().request_timeout(Some(BOUND));
        if !topics.is_empty() {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            for r in admin.delete_topics(&names, &opts).await? {
                if let Err((t, e)) = r {
                    eprintln!("cleanup: topic {t}: {e}");
                }
            }
        }
        let groups = admin.inner().fetch_group_list(None, BOUND)?;
        let groups: Vec<String> = groups
            .groups()
            .iter()
            .map(|g| g.name().to_owned())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        if !groups.is_empty() {
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            // A group still settling after its members left may refuse; it is then
            // empty and expires by itself.
            let _ = admin.delete_groups(&names, &opts).await;
        }
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(&self.cql)
            .build()
            .await?;
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.keyspace), ())
            .await?;
        Ok((topics.len(), groups.len()))
    }
}

impl Drop for Fresh {
    /// Bounded, and never fails the run: a failure is printed.
    fn drop(&mut self) {
        let me = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // The timer is made inside the runtime, which it needs.
            let r = rt.block_on(async { tokio::time::timeout(BOUND * 3, me.run()).await });
            r.map_err(|_| anyhow::anyhow!("timed out"))?
        })
        .join();
        match done {
            Ok(Ok((topics, groups))) => println!(
                "   cleanup: deleted {topics} topics, {groups} groups under {} and keyspace {}",
                self.0.prefix, self.0.keyspace
            ),
            Ok(Err(e)) => eprintln!("cleanup of {} / {}: {e}", self.0.prefix, self.0.keyspace),
            Err(_) => eprintln!(
                "cleanup of {} / {} panicked",
                self.0.prefix, self.0.keyspace
            ),
        }
    }
}
