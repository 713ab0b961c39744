//! Fetching from Kafka: one consumer per stream, polled on its own thread.
//!
//! The fetch thread polls an rdkafka `BaseConsumer`, decodes each message into a [`Change`] and
//! sends them in batches through a channel whose bytes the read-ahead budget bounds, so decoding
//! runs beside the application and a slow application makes the thread wait rather than
//! memory grow. [`ChangeConsumer::next`] hands changes out one at a time. Once the stream is
//! read with [`ChangeConsumer::next_batch`], the fetch thread copies runs of messages instead,
//! read straight into Arrow rows on a thread of their own ([`run`](self::run)), and a batch
//! is joined from rows and changes ([`batch`](self::batch)).
//!
//! Positions follow the application, never the fetcher: a change is *finished* when the
//! application asks for the next one (or calls `commit`), and only finished positions are
//! committed — every `commit_interval`, before a revoked partition is let go, and on close.
//! A change handed out but not finished is never committed, so a crash re-delivers it.
//!
//! Bounded reads (`until`) fix each partition's end when it is assigned — the high watermark,
//! or the first offset at or after a time — and end when the consumer's *position* has reached
//! it on every partition, so transaction markers and compacted gaps end correctly.
//!
//! The stages live in their own files: [`config`](self::config) (settings),
//! [`context`](self::context) (librdkafka's callbacks and requests), [`budget`](self::budget)
//! (read-ahead memory), [`fetch`](self::fetch) (the fetch thread),
//! [`run`](self::run) (messages read straight into rows), [`batch`](self::batch) (a batch's
//! pieces joined) and [`delivery`](self::delivery) (what is handed out and finished: the
//! rules); this file holds
//! the [`ChangeConsumer`] that ties them together.

mod batch;
mod budget;
mod config;
mod context;
mod delivery;
mod doorbell;
mod fetch;
mod oauth;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use tokio::sync::mpsc;

use self::budget::ReadAhead;
use self::config::{check_oauth, client_config};
use self::context::{all_partitions, commit, Kafka, StreamContext, REQUEST_TIMEOUT};
use self::delivery::{Delivery, Taken, Terminal};
use self::fetch::{Fetch, Fetched};
use crate::change::{Change, ChangeDecoder, Position};
use crate::error::{Error, Result};
use crate::positions::Positions;
use crate::registry::Registry;
use crate::runtime::runtime;

pub use self::batch::Batch;
pub use self::config::{
    CommitPolicy, OnDecodeError, Start, StreamConfig, Until, DEFAULT_MAX_BUFFER_BYTES,
};
pub(crate) use self::context::{close_promptly, log_librdkafka, retrying};
pub use self::delivery::DeadLetter;
pub use self::doorbell::Doorbell;
pub use self::oauth::{OAuthToken, OAuthTokens};

/// The most messages the fetch thread reads into rows at once, whatever `max_rows`: bounds
/// the bytes a run copies before they count against the read-ahead budget.
const MAX_ROWS_PER_RUN: usize = 8192;

/// How long closing waits for the watermarks that `lag()` after `close()` reports.
const CLOSE_LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of waiting for the next batch.
#[derive(Debug)]
pub enum NextBatch {
    /// Changes of one table under one value schema, in log order.
    Batch(Batch),
    /// Nothing to hand over yet; ask again.
    Pending,
    /// A bounded stream has delivered everything.
    End,
}

/// The outcome of waiting for the next change.
#[derive(Debug)]
pub enum Next {
    /// A change.
    Change(Box<Change>),
    /// Nothing arrived in time; ask again.
    Pending,
    /// A bounded stream has delivered everything.
    End,
}

/// What a stream knew when it was closed, for `positions()` and `lag()` afterwards.
struct Closed {
    positions: HashMap<(String, i32), i64>,
    lag: Option<HashMap<(String, i32), i64>>,
}

/// A stream of changes from Kafka. Every method takes `&self`, so one stream can be shared by
/// a blocking iterator and an async one.
pub struct ChangeConsumer {
    consumer: Arc<Kafka>,
    positions: Arc<Positions>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<Fetched>>,
    /// Rung by the fetch thread when an async reader waits (see [`Doorbell`]).
    doorbell: Arc<Doorbell>,
    delivery: Mutex<Delivery>,
    read_ahead: Arc<ReadAhead>,
    config: StreamConfig,
    stop: Arc<AtomicBool>,
    /// 0 while the stream is read change by change; once it is read with `batches()`, how
    /// many messages the fetch thread reads into rows at most at once.
    rows_per_run: Arc<AtomicUsize>,
    fetch_thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that opened the stream: a forked child has none of its threads.
    opened_in: u32,
    closed: Mutex<Option<Closed>>,
}

impl ChangeConsumer {
    /// Connect and start fetching.
    pub fn start(config: StreamConfig) -> Result<ChangeConsumer> {
        if config.topics.is_empty() {
            return Err(Error::Config("no topics given".into()));
        }
        if config.group_id.is_none() && config.start == Start::Committed {
            return Err(Error::Config(
                "start=\"committed\" needs a group_id (without a group nothing is committed)"
                    .into(),
            ));
        }
        check_oauth(&config)?;
        let registry = Registry::new(
            &config.schema_registry_url,
            &config.registry,
            config.registry_timeout,
        )?;
        let positions = Arc::new(Positions::default());
        let context = StreamContext {
            positions: positions.clone(),
            start: config.start.clone(),
            until: config.until,
            uses_group: config.group_id.is_some(),
            reset_to_latest: config.kafka.iter().any(|(key, value)| {
                key == "auto.offset.reset" && matches!(value.as_str(), "latest" | "largest" | "end")
            }),
            failure: Mutex::new(None),
            oauth: config.oauth.clone(),
        };
        let consumer: Arc<Kafka> = Arc::new(client_config(&config).create_with_context(context)?);
        if config.group_id.is_some() {
            consumer.subscribe(&config.topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        } else {
            let mut assignment = all_partitions(&consumer, &config.topics)?;
            consumer
                .context()
                .prepare_assignment(&consumer, &mut assignment)?;
            consumer.assign(&assignment)?;
        }
        // Unbounded in items, bounded in bytes: the fetch thread pauses fetching while the
        // items sent and not yet taken hold `max_buffer_bytes / 2` or more.
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let rows_per_run = Arc::new(AtomicUsize::new(0));
        let read_ahead = Arc::new(ReadAhead::new(config.max_buffer_bytes));
        let doorbell = Arc::<Doorbell>::default();
        let fetch = Fetch {
            consumer: consumer.clone(),
            positions: positions.clone(),
            decoder: ChangeDecoder::new(registry, config.decoder.clone()),
            sender,
            doorbell: doorbell.clone(),
            stop: stop.clone(),
            rows_per_run: rows_per_run.clone(),
            runs: Default::default(),
            bounded: config.until != Until::Forever,
            auto_commit: config.group_id.is_some() && config.commit == CommitPolicy::Auto,
            commit_interval: config.commit_interval,
            on_decode_error: config.on_decode_error,
            read_ahead: read_ahead.clone(),
            batch_bytes: 0,
            paused_for_room: false,
            fetched_to: Default::default(),
            end_ahead: None,
        };
        let rung_at_exit = doorbell.clone();
        let fetch_thread = crate::threads::spawn("changestream-fetch", move || {
            fetch.run();
            // The channel is closed now: a reader waiting on its event loop must see it.
            rung_at_exit.ring();
        })
        .map_err(|e| Error::Config(format!("cannot start the fetch thread: {e}")))?;
        let delivery = Delivery::new(
            positions.clone(),
            read_ahead.clone(),
            config.commit,
            config.track_progress,
        );
        Ok(ChangeConsumer {
            consumer,
            positions,
            receiver: tokio::sync::Mutex::new(receiver),
            doorbell,
            delivery: Mutex::new(delivery),
            read_ahead,
            config,
            stop,
            rows_per_run,
            fetch_thread: Mutex::new(Some(fetch_thread)),
            opened_in: crate::process::id(),
            closed: Mutex::new(None),
        })
    }

    fn delivery(&self) -> std::sync::MutexGuard<'_, Delivery> {
        self.delivery.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next change, waiting at most `wait`. Asking for the next change finishes the one
    /// handed out before it (unless commits are manual).
    pub fn next(&self, wait: Duration) -> Result<Next> {
        self.check_process()?;
        self.check_not_batched()?;
        self.delivery().finish_on_next();
        let deadline = Instant::now() + wait;
        loop {
            let taken = self.delivery().take();
            match taken {
                Taken::Change(change) => return Ok(Next::Change(change)),
                Taken::End => return Ok(Next::End),
                Taken::Failed(error) => return Err(error),
                Taken::Empty => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let received = runtime().block_on(async {
                let mut receiver = self.receiver.lock().await;
                tokio::time::timeout(left, receiver.recv()).await
            });
            match received {
                Err(_elapsed) => return Ok(Next::Pending),
                Ok(fetched) => self.delivery().absorb(fetched),
            }
        }
    }

    /// The next change without waiting, if one is already fetched; `Ok(None)` means the caller
    /// must wait (an async reader: for the doorbell, see [`ChangeConsumer::ring_when_ready`]).
    pub fn next_ready(&self) -> Result<Option<Next>> {
        self.check_process()?;
        self.check_not_batched()?;
        let mut taken = {
            let mut delivery = self.delivery();
            delivery.finish_on_next();
            delivery.take()
        };
        if matches!(taken, Taken::Empty) && self.absorb_queued() {
            taken = self.delivery().take();
        }
        Ok(match taken {
            Taken::Change(change) => Some(Next::Change(change)),
            Taken::End => Some(Next::End),
            Taken::Failed(error) => return Err(error),
            Taken::Empty => None,
        })
    }

    /// Move what the fetch thread has handed over already into the delivery, without
    /// waiting (not even for the receiver, when a wait holds it); whether anything came.
    fn absorb_queued(&self) -> bool {
        let Ok(mut receiver) = self.receiver.try_lock() else {
            return false;
        };
        let mut absorbed = false;
        loop {
            match receiver.try_recv() {
                Ok(fetched) => self.delivery().absorb(Some(fetched)),
                Err(mpsc::error::TryRecvError::Empty) => return absorbed,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.delivery().absorb(None);
                    return true;
                }
            }
            absorbed = true;
        }
    }

    /// The bell the fetch thread rings for a reader that waits on an event loop.
    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }

    /// Have the doorbell rung once something can be taken: now, if something can be already
    /// (checked after arming, so a hand-over in between is not missed), else at the fetch
    /// thread's next hand-over.
    pub fn ring_when_ready(&self) {
        self.doorbell.arm();
        let queued = match self.receiver.try_lock() {
            Ok(receiver) => !receiver.is_empty() || receiver.is_closed(),
            // A blocking reader of the same stream waits on the receiver: what it receives
            // the next hand-over or the timer's ring brings (ringing now would spin).
            Err(_) => false,
        };
        if queued || self.delivery().has_news() {
            self.doorbell.ring();
        }
    }

    /// From now on the stream is read with [`ChangeConsumer::next_batch`], in batches of at
    /// most `max_rows`: the fetch thread reads messages straight into rows where it can, and
    /// the stream no longer hands out single changes.
    pub fn read_in_batches(&self, max_rows: usize) {
        self.rows_per_run
            .store(max_rows.clamp(1, MAX_ROWS_PER_RUN), Ordering::Relaxed);
    }

    fn check_not_batched(&self) -> Result<()> {
        match self.rows_per_run.load(Ordering::Relaxed) {
            0 => Ok(()),
            _ => Err(Error::Config(delivery::ITERATED_AFTER_BATCHES.into())),
        }
    }

    /// Whether the stream was opened in this process (not in a parent before a `fork()`).
    fn check_process(&self) -> Result<()> {
        if crate::process::id() == self.opened_in {
            Ok(())
        } else {
            Err(Error::Forked {
                opened_in: self.opened_in,
            })
        }
    }

    /// The next batch of changes of one table under one value schema: at most `max_rows`,
    /// handed over when full, when the next change belongs elsewhere, when `max_wait` has
    /// passed since its first change, or when a bounded stream ends. Waits at most `slice` per
    /// call; a batch still filling is kept for the next call. Asking for the next batch
    /// finishes the previous one.
    pub fn next_batch(
        &self,
        max_rows: usize,
        max_wait: Duration,
        slice: Duration,
    ) -> Result<NextBatch> {
        self.check_process()?;
        let max_rows = max_rows.max(1);
        if self.delivery().filling.is_empty() {
            self.delivery().finish_on_next();
        }
        let slice_ends = Instant::now() + slice;
        loop {
            let ended = {
                let mut delivery = self.delivery();
                let (ready, ended) = delivery.fill(max_rows)?;
                let waited = delivery
                    .filling_since
                    .is_some_and(|since| since.elapsed() >= max_wait);
                if ready || ((waited || ended) && !delivery.filling.is_empty()) {
                    return Ok(NextBatch::Batch(delivery.take_filling()));
                }
                ended
            };
            if ended {
                return Ok(NextBatch::End);
            }
            let until = match self.delivery().filling_since {
                Some(since) => (since + max_wait).min(slice_ends),
                None => slice_ends,
            };
            let left = until.saturating_duration_since(Instant::now());
            let received = runtime().block_on(async {
                let mut receiver = self.receiver.lock().await;
                tokio::time::timeout(left, receiver.recv()).await
            });
            match received {
                Ok(fetched) => self.delivery().absorb(fetched),
                Err(_elapsed) if Instant::now() >= slice_ends => return Ok(NextBatch::Pending),
                Err(_elapsed) => {}
            }
        }
    }

    /// Finish what was handed out — everything, or with `through` everything up to and
    /// including that change on its partition and what was handed out before it on the
    /// others — and commit all finished positions now.
    pub fn commit(&self, through: Option<&Position>) -> Result<()> {
        self.check_process()?;
        match through {
            Some(position) => self.delivery().finish_through(position),
            None => self.delivery().finish_delivered(),
        }
        if self.config.group_id.is_none() {
            return Ok(());
        }
        commit(
            &self.consumer,
            &self.positions,
            self.positions.uncommitted(),
        )
    }

    /// Next offsets after what the application finished, by partition: pass them back as
    /// `Start::Offsets` to resume exactly there.
    pub fn positions(&self) -> HashMap<(String, i32), i64> {
        match &*self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(closed) => closed.positions.clone(),
            None => self.positions.finished(),
        }
    }

    /// Messages each owned partition holds beyond what the application finished.
    pub fn lag(&self) -> Result<HashMap<(String, i32), i64>> {
        if let Some(closed) = &*self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            return closed.lag.clone().ok_or(Error::Closed);
        }
        self.check_process()?;
        self.measure_lag(REQUEST_TIMEOUT)
    }

    /// Wait at most `wait` for the stream's first assignment (a group's first rebalance);
    /// whether it has one.
    pub fn wait_assigned(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while self.positions.generation() == 0 {
            if Instant::now() >= deadline || self.fetch_thread_gone() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn fetch_thread_gone(&self) -> bool {
        self.fetch_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    fn measure_lag(&self, timeout: Duration) -> Result<HashMap<(String, i32), i64>> {
        let finished = self.positions.finished();
        let owned = {
            let table = self.positions.lock();
            table
                .iter()
                .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
                .collect::<Vec<_>>()
        };
        let positions = self.consumer.position()?;
        let mut lag = HashMap::new();
        // One deadline for the call, not one per partition: with the brokers away, a stream of
        // many partitions would otherwise wait `timeout` for each of them.
        let deadline = Instant::now() + timeout;
        for (topic, partition) in owned {
            let (low, high) = retrying(deadline, |left| {
                self.consumer.fetch_watermarks(&topic, partition, left)
            })
            .map_err(|error| error.reading_the_end_of(&topic, partition, timeout))?;
            let at = finished
                .get(&(topic.clone(), partition))
                .copied()
                .or_else(|| {
                    match positions
                        .find_partition(&topic, partition)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    }
                });
            lag.insert((topic, partition), high - at.unwrap_or(low).max(low));
        }
        Ok(lag)
    }

    /// Bounded reads with progress tracked: (messages handed out or passed, messages between
    /// each owned partition's start and its end). None when unbounded or not tracked.
    pub fn progress(&self) -> Option<(u64, u64)> {
        if self.config.until == Until::Forever {
            return None;
        }
        let handed_out_to: HashMap<(String, i32), i64> = self
            .delivery()
            .handed_out_to
            .as_ref()?
            .iter()
            .map(|((topic, partition), to)| ((topic.to_string(), *partition), *to))
            .collect();
        let (mut done, mut total) = (0u64, 0u64);
        for (topic, partitions) in self.positions.lock().iter() {
            for (partition, state) in partitions {
                let (Some(start), Some(end)) = (state.start, state.end) else {
                    continue;
                };
                let at = handed_out_to
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .unwrap_or(start)
                    .clamp(start, end.max(start));
                done += u64::try_from(at - start).unwrap_or(0);
                total += u64::try_from(end - start).unwrap_or(0);
            }
        }
        Some((done, total))
    }

    /// The stream's counters.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let c = &self.positions.counters;
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("delivered", read(&c.delivered)),
            ("skipped", read(&c.skipped)),
            ("dead_lettered", read(&c.dead_lettered)),
            ("committed", read(&c.committed)),
            ("commit_failures", read(&c.commit_failures)),
            ("dropped_on_revoke", read(&c.dropped_on_revoke)),
            ("rebalances", read(&c.rebalances)),
            ("broker_disconnects", read(&c.broker_disconnects)),
            ("buffered_bytes", self.read_ahead.waiting() as u64),
            ("buffer_full", read(&self.read_ahead.pauses)),
        ]
    }

    /// Take the messages set aside under `OnDecodeError::DeadLetter` so far.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.delivery().dead_letters)
    }

    /// Stop fetching, commit what the application finished (unless `commit` is false: an
    /// exception is on its way out), and leave the group. Idempotent. `positions()` and
    /// `lag()` keep answering with what they said at this moment.
    pub fn close(&self, commit_finished: bool) -> Result<()> {
        self.check_process()?;
        let thread = self
            .fetch_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(thread) = thread else {
            return Ok(());
        };
        self.stop.store(true, Ordering::Relaxed);
        self.read_ahead.close();
        // A token request waiting for the application would hold the fetch thread.
        if let Some(tokens) = &self.config.oauth {
            tokens.close();
        }
        // The fetch thread stops within a poll slice, which also ends any pending receive.
        runtime().block_on(async { self.receiver.lock().await.close() });
        let _ = thread.join();
        let mut outcome = Ok(());
        if self.config.group_id.is_some() && commit_finished {
            let committed = commit(
                &self.consumer,
                &self.positions,
                self.positions.uncommitted(),
            );
            // After the stream failed, its own error is the one that matters.
            outcome = match committed {
                Err(error) if matches!(self.delivery().terminal, Some(Terminal::Failed(_))) => {
                    log::warn!("commit on close failed: {error}");
                    Ok(())
                }
                other => other,
            };
        }
        // Where the application stands, kept before leaving the group forgets the partitions.
        let positions = match (commit_finished, self.config.group_id.is_some()) {
            // Without the commit, a group resumes from what it committed.
            (false, true) => self.committed_positions(),
            _ => self.positions.finished(),
        };
        let lag = self.measure_lag(CLOSE_LAG_TIMEOUT).ok();
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Closed { positions, lag });
        if self.config.group_id.is_some() {
            // Leaving the group runs the revoke callback here, which commits nothing new
            // (or, without the commit, nothing at all).
            self.positions.forget_finished();
            self.consumer.unsubscribe();
        }
        close_promptly(&self.consumer);
        outcome
    }

    /// Where the group's committed positions stand on every owned partition.
    fn committed_positions(&self) -> HashMap<(String, i32), i64> {
        let table = self.positions.lock();
        table
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().filter_map(move |(partition, state)| {
                    state
                        .committed
                        .or(state.start)
                        .map(|c| ((topic.clone(), *partition), c))
                })
            })
            .collect()
    }
}

impl Drop for ChangeConsumer {
    fn drop(&mut self) {
        if self.check_process().is_err() {
            // A forked child: the client's threads live in the parent, and destroying it here
            // would wait for them forever. Leak it.
            std::mem::forget(self.consumer.clone());
            if let Some(thread) = self
                .fetch_thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                std::mem::forget(thread);
            }
            return;
        }
        if let Err(error) = self.close(true) {
            log::warn!("closing the stream: {error}");
        }
    }
}
