//! Reading the embedded log: a subscription keeps a cursor per topic, reads a batch
//! when the topic's tip moved past it, and waits on the tips otherwise.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use redb::ReadableDatabase;
use tokio::sync::watch;

use super::record::decode;
use super::writer::WriteOp;
use super::{EmbeddedLog, OFFSETS, RECORDS};
use crate::msglog::{LogError, LogRecord, Subscription, unavailable};

/// Records read from disk per topic per fill.
const FILL_BATCH: usize = 256;

impl EmbeddedLog {
    pub(super) fn subscription(
        &self,
        group: Option<String>,
        topics: &[String],
        from_start: bool,
    ) -> Result<EmbeddedSub, LogError> {
        let mut cursors = HashMap::new();
        let mut tips = HashMap::new();
        let rtx = self.inner.db.begin_read().map_err(unavailable)?;
        let offsets = rtx.open_table(OFFSETS).map_err(unavailable)?;
        for t in topics {
            let start = if let Some(eph) = self.inner.ephemeral.lock().unwrap().get(t) {
                if from_start {
                    eph.records.front().map_or(eph.next, |r| r.offset as u64)
                } else {
                    eph.next
                }
            } else {
                match &group {
                    Some(g) => offsets
                        .get((g.as_str(), t.as_str()))
                        .map_err(unavailable)?
                        .map_or(0, |v| v.value()),
                    None => 0,
                }
            };
            cursors.insert(t.clone(), start);
            tips.insert(t.clone(), self.inner.tip(t));
        }
        Ok(EmbeddedSub {
            log: self.clone(),
            group,
            cursors,
            paused: HashSet::new(),
            buf: VecDeque::new(),
            tips,
        })
    }
}

pub(super) struct EmbeddedSub {
    log: EmbeddedLog,
    /// None: a read outside any group, nothing is committed.
    group: Option<String>,
    /// Next offset to deliver, per topic.
    pub(super) cursors: HashMap<String, u64>,
    paused: HashSet<String>,
    /// Read but not yet delivered; never holds records of a paused topic.
    buf: VecDeque<LogRecord>,
    /// Each read topic's tip, to wait on.
    pub(super) tips: HashMap<String, watch::Receiver<u64>>,
}

impl EmbeddedSub {
    /// Reads up to a batch per topic from the cursors, for topics whose tip (as last
    /// marked seen) is past the cursor: a topic with nothing new costs no read.
    fn fill(&mut self) -> Result<(), LogError> {
        let inner = &self.log.inner;
        let mut due: Vec<(&str, u64, u64)> = self
            .cursors
            .iter()
            .filter(|(t, _)| !self.paused.contains(*t))
            .filter_map(|(t, c)| {
                let tip = *self.tips.get(t)?.borrow();
                (tip > *c).then_some((t.as_str(), *c, tip))
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort();
        let mut rtx = None;
        for (topic, cursor, tip) in due {
            if let Some(eph) = inner.ephemeral.lock().unwrap().get(topic) {
                // Offsets in memory are contiguous from the front record's.
                let front = eph.records.front().map_or(eph.next, |r| r.offset as u64);
                let from = (cursor.max(front) - front) as usize;
                let to = eph.records.len().min(from + FILL_BATCH);
                self.buf
                    .extend(eph.records.range(from.min(to)..to).cloned());
                continue;
            }
            if rtx.is_none() {
                inner.reads.fetch_add(1, Ordering::Relaxed);
                let tx = inner.db.begin_read().map_err(unavailable)?;
                let records = tx.open_table(RECORDS).map_err(unavailable)?;
                rtx = Some((tx, records));
            }
            let (_, records) = rtx.as_ref().expect("opened above");
            let range = records
                .range((topic, cursor)..(topic, tip))
                .map_err(unavailable)?;
            for row in range.take(FILL_BATCH) {
                let (k, v) = row.map_err(unavailable)?;
                let (_, off) = k.value();
                match decode(topic, off, v.value()) {
                    Some(r) => self.buf.push_back(r),
                    None => tracing::error!(
                        topic,
                        offset = off,
                        "undecodable embedded log record skipped"
                    ),
                }
            }
        }
        Ok(())
    }

    /// Waits until a read topic's tip moves past what was marked seen.
    async fn changed(&mut self) -> Result<(), LogError> {
        if self.tips.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.tips.values_mut().map(|t| Box::pin(t.changed()));
        futures_util::future::select_all(waits)
            .await
            .0
            .map_err(|_| LogError::Closed)
    }
}

#[async_trait]
impl Subscription for EmbeddedSub {
    async fn next(&mut self) -> Result<LogRecord, LogError> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                match self.cursors.get_mut(&r.topic) {
                    Some(c) => *c = r.offset as u64 + 1,
                    None => {
                        self.cursors.insert(r.topic.clone(), r.offset as u64 + 1);
                    }
                }
                return Ok(r);
            }
            // Mark the tips seen before reading, so an append that lands after the
            // read wakes us.
            for t in self.tips.values_mut() {
                t.borrow_and_update();
            }
            self.fill()?;
            if self.buf.is_empty() {
                self.changed().await?;
            }
        }
    }

    fn commit(&mut self, record: &LogRecord) -> Result<(), LogError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        if self.log.is_ephemeral(&record.topic) {
            return Ok(());
        }
        self.log
            .inner
            .writer
            .send(WriteOp::Commit {
                group: group.clone(),
                topic: record.topic.clone(),
                next: record.offset as u64 + 1,
            })
            .map_err(|_| LogError::Closed)
    }

    fn pause(&mut self, topic: &str, _partition: i32) -> Result<(), LogError> {
        self.paused.insert(topic.to_owned());
        if let Some(first) = self
            .buf
            .iter()
            .find(|r| r.topic == topic)
            .map(|r| r.offset as u64)
        {
            self.cursors.insert(topic.to_owned(), first);
        }
        self.buf.retain(|r| r.topic != topic);
        Ok(())
    }

    fn resume(&mut self, topic: &str, _partition: i32) -> Result<(), LogError> {
        // The next `next` reads before it waits: nothing to wake.
        self.paused.remove(topic);
        Ok(())
    }

    /// The embedded log has one partition per topic: its cursor moves back.
    async fn seek(&mut self, topic: &str, _partition: i32, offset: i64) -> Result<(), LogError> {
        if self.cursors.contains_key(topic) {
            self.cursors.insert(topic.to_owned(), offset.max(0) as u64);
            self.buf.retain(|r| r.topic != topic);
        }
        Ok(())
    }

    async fn flush_commits(&mut self) -> Result<(), LogError> {
        self.log.send(WriteOp::Flush).await
    }
}
