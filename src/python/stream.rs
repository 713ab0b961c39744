//! `changestream.ChangeStream`: the iterator over changes.
//!
//! Every wait happens with the GIL released and in slices of at most 100 ms, checking for
//! signals between slices, so Ctrl-C interrupts a blocked `next()` promptly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDateTime, PyDict, PyList, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::aio::{yielded, Waiters};
use super::async_changes::{async_changes, Step};
use super::batch::PyBatchIterator;
use super::change::PyChange;
use super::convert::utc_datetime;
use super::oauth::{self, TokenCallback};
use super::progress::Progress;
use super::wait;
use crate::avro::Schema;
use crate::change::{DecoderOptions, Format, ReaderSchemas};
use crate::error::Error;
use crate::kafka::{
    ChangeConsumer, CommitPolicy, DeadLetter, Next, OnDecodeError, Start, StreamConfig, Until,
    DEFAULT_MAX_BUFFER_BYTES,
};

/// Follow one or more change-event topics from Kafka.
///
/// ``ChangeStream(topics, *, bootstrap_servers, schema_registry_url, ...)`` yields one
/// :class:`Change` per message (``for``, ``async for``, :meth:`poll`) or Arrow batches
/// (:meth:`batches`); use it as a context manager, which closes it.
///
/// Arguments:
///
/// - ``topics``: a topic name or a sequence of them.
/// - ``bootstrap_servers``: Kafka brokers, ``"host:port,..."``.
/// - ``schema_registry_url``: a Confluent-compatible schema registry (for Apicurio its
///   ``/apis/ccompat/v7`` API).
/// - ``group_id``: a consumer group to join; positions are committed to it. Without one,
///   every partition is read and nothing is committed (keep :meth:`positions` yourself).
/// - ``start``: ``"committed"`` (the default with a group; partitions without a committed
///   position start at the earliest), ``"earliest"`` (the default without), ``"latest"``,
///   an aware ``datetime``, or ``{(topic, partition): offset}`` (what :meth:`positions`
///   returned).
/// - ``until``: ``None`` (follow forever), ``"end"`` (each partition's end when it is
///   assigned) or an aware ``datetime``.
/// - ``commit``: ``"auto"`` (asking for the next change finishes the previous one) or
///   ``"manual"`` (nothing is finished until :meth:`commit`).
/// - ``commit_interval``: seconds between commits of finished positions.
/// - ``on_decode_error``: ``"raise"``, ``"skip"`` or ``"dead_letter"`` (see
///   :meth:`dead_letters`).
/// - ``format``: ``"auto"`` (detected per value schema), ``"debezium"`` or ``"row"``.
/// - ``emit_tombstones``: deliver Debezium's tombstones as deletes with ``tombstone=True``.
/// - ``reader_schema``: an Avro schema (JSON text or dict), or ``{topic: schema}``, to read
///   every value through schema resolution.
/// - ``kafka``: librdkafka settings, passed through (``security.protocol``, ...).
/// - ``registry``: schema registry client settings, in confluent-kafka's names
///   (``basic.auth.user.info``, ``bearer.auth.token``, ``ssl.ca.location``, ...).
/// - ``registry_timeout``: seconds a schema lookup may retry before it fails.
/// - ``max_buffer_bytes``: the most memory read-ahead may take (at least 1 MiB).
/// - ``progress``: show a progress bar for bounded reads (tqdm when installed).
/// - ``oauth_cb``: for ``sasl.mechanism=OAUTHBEARER``, a callable taking the
///   ``sasl.oauthbearer.config`` setting (a str) and returning ``(token, expiry)``, the
///   expiry in seconds since the epoch (optionally also a principal), as confluent-kafka's.
///   It runs when the stream opens and whenever the token is due for a refresh, on the
///   thread that reads the stream; if it raises, the stream raises :class:`KafkaError`.
#[pyclass(name = "ChangeStream", module = "changestream", frozen)]
pub(crate) struct PyChangeStream {
    /// The open consumer; `None` once closed.
    consumer: Mutex<Option<Arc<ChangeConsumer>>>,
    /// What `positions()`, `lag()` and `stats()` report after `close()`.
    closed: Mutex<Option<ClosedView>>,
    /// What `repr` names: the topics and the group.
    topics: Vec<String>,
    group_id: Option<String>,
    progress: Progress,
    waiters: Arc<Waiters>,
    /// `oauth_cb`, run when librdkafka asks for a token.
    oauth: Option<Arc<TokenCallback>>,
}

/// What a closed stream still tells.
struct ClosedView {
    positions: HashMap<(String, i32), i64>,
    lag: crate::Result<HashMap<(String, i32), i64>>,
    stats: Vec<(&'static str, u64)>,
}

// The signature spells the default out, so Python's `inspect` shows it; kept equal here.
const _: () = assert!(DEFAULT_MAX_BUFFER_BYTES == 67_108_864);

/// The smallest read-ahead budget: below it librdkafka would fetch a message at a time.
const MIN_BUFFER_BYTES: usize = 1 << 20;

/// How long `lag()` waits for a group stream's first assignment.
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(30);

fn config_error(message: String) -> PyErr {
    Error::Config(message).into()
}

#[pymethods]
impl PyChangeStream {
    #[new]
    #[pyo3(signature = (
        topics, *, bootstrap_servers, schema_registry_url, group_id = None, start = None,
        until = None, commit = "auto", commit_interval = 5.0, on_decode_error = "raise",
        format = "auto", emit_tombstones = false, reader_schema = None, kafka = None, registry = None, registry_timeout = 30.0,
        max_buffer_bytes = 67_108_864, progress = false, oauth_cb = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        topics: &Bound<'_, PyAny>,
        bootstrap_servers: String,
        schema_registry_url: String,
        group_id: Option<String>,
        start: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        commit: &str,
        commit_interval: f64,
        on_decode_error: &str,
        format: &str,
        emit_tombstones: bool,
        reader_schema: Option<&Bound<'_, PyAny>>,
        kafka: Option<&Bound<'_, PyAny>>,
        registry: Option<&Bound<'_, PyAny>>,
        registry_timeout: f64,
        max_buffer_bytes: usize,
        progress: bool,
        oauth_cb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if max_buffer_bytes < MIN_BUFFER_BYTES {
            return Err(config_error(format!(
                "max_buffer_bytes must be at least {MIN_BUFFER_BYTES} (1 MiB), not {max_buffer_bytes}"
            )));
        }
        let config = StreamConfig {
            topics: topic_list(topics)?,
            bootstrap_servers,
            schema_registry_url,
            registry: registry.map(settings).transpose()?.unwrap_or_default(),
            registry_timeout: seconds("registry_timeout", registry_timeout)?,
            start: parse_start(start, group_id.is_some())?,
            group_id,
            until: parse_until(until)?,
            commit: match commit {
                "auto" => CommitPolicy::Auto,
                "manual" => CommitPolicy::Manual,
                other => {
                    return Err(config_error(format!(
                        "commit must be \"auto\" or \"manual\", not {other:?}"
                    )))
                }
            },
            commit_interval: seconds("commit_interval", commit_interval)?,
            on_decode_error: match on_decode_error {
                "raise" => OnDecodeError::Raise,
                "skip" => OnDecodeError::Skip,
                "dead_letter" => OnDecodeError::DeadLetter,
                other => {
                    return Err(config_error(format!(
                    "on_decode_error must be \"raise\", \"skip\" or \"dead_letter\", not {other:?}"
                )))
                }
            },
            decoder: DecoderOptions {
                format: match format {
                    "auto" => Format::Auto,
                    "debezium" => Format::Debezium,
                    "row" => Format::Row,
                    other => {
                        return Err(config_error(format!(
                            "format must be \"auto\", \"debezium\" or \"row\", not {other:?}"
                        )))
                    }
                },
                emit_tombstones,
                readers: reader_schema
                    .map(reader_schemas)
                    .transpose()?
                    .unwrap_or_default(),
            },
            kafka: kafka.map(settings).transpose()?.unwrap_or_default(),
            max_buffer_bytes,
            track_progress: false,
            oauth: None,
        };
        let mut config = config;
        // The first token before the client exists, so its first connection has one.
        let oauth = oauth_cb
            .map(|callback| {
                let oauthbearer_config = config
                    .kafka
                    .iter()
                    .rev()
                    .find(|(key, _)| key == "sasl.oauthbearer.config")
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default();
                TokenCallback::start(py, callback, oauthbearer_config).map(Arc::new)
            })
            .transpose()?;
        config.oauth = oauth.as_ref().map(|callback| callback.tokens());
        config.track_progress = progress && config.until != Until::Forever;
        let progress = match config.track_progress {
            true => Progress::shown(py)?,
            false => Progress::default(),
        };
        let topics = config.topics.clone();
        let group_id = config.group_id.clone();
        // Without a group, opening asks the brokers for the topics' partitions, for up to 30 s
        // when none answers: a wait that Ctrl-C ends.
        let starting = wait::in_background(
            py,
            move || ChangeConsumer::start(config),
            |py| between_slices(py, oauth.as_deref()),
        )?;
        let consumer = starting?;
        let waiters = Arc::new(Waiters::new(consumer.doorbell().clone()));
        Ok(PyChangeStream {
            consumer: Mutex::new(Some(Arc::new(consumer))),
            closed: Mutex::new(None),
            topics,
            group_id,
            progress,
            waiters,
            oauth,
        })
    }

    /// What the garbage collector must know of: the `oauth_cb` (see `TokenCallback::traverse`).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        match &self.oauth {
            Some(oauth) => TokenCallback::traverse(oauth, &visit),
            None => Ok(()),
        }
    }

    fn __clear__(&self) {
        if let Some(oauth) = &self.oauth {
            TokenCallback::clear(oauth);
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "ChangeStream(topics={:?}, group_id={}, state={:?})",
            self.topics,
            self.group_id
                .as_ref()
                .map_or_else(|| "None".to_owned(), |group| format!("{group:?}")),
            if self.lock().is_some() {
                "open"
            } else {
                "closed"
            }
        )
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyChange>> {
        self.wait(py, None)?
            .ok_or_else(|| PyStopIteration::new_err(()))
    }

    /// The next change, or None if `timeout` seconds pass first or a bounded stream ended.
    #[pyo3(signature = (timeout = None))]
    fn poll<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyChange>>> {
        let timeout = timeout
            .map(|t| seconds("timeout", t.max(0.0)))
            .transpose()?;
        self.wait(py, Some(timeout.unwrap_or(Duration::MAX)))
    }

    /// Finish what was handed out and commit the finished positions to the group now: without
    /// `change`, every change handed out on every partition; with it, that change and what
    /// came before it on its partition, and on the other partitions what was handed out
    /// before it.
    #[pyo3(signature = (change = None))]
    fn commit(&self, py: Python<'_>, change: Option<PyRef<'_, PyChange>>) -> PyResult<()> {
        let through = change.map(|c| c.position());
        let consumer = self.consumer()?;
        Ok(self.in_background(py, move || consumer.commit(through.as_ref()))??)
    }

    /// `{(topic, partition): next_offset}` after what the application finished; pass it back as
    /// `start=` to resume exactly there.
    fn positions(&self, py: Python<'_>) -> PyResult<HashMap<(String, i32), i64>> {
        if let Some(closed) = &*self.closed_view() {
            return Ok(closed.positions.clone());
        }
        self.with(py, |consumer| Ok(consumer.positions()))
    }

    /// `{(topic, partition): messages}` between what the application finished and the end of
    /// each owned partition.
    /// A group stream waits (up to 30 s) for its first assignment; after `close()`, the lag
    /// when it closed.
    fn lag(&self, py: Python<'_>) -> PyResult<HashMap<(String, i32), i64>> {
        if let Some(closed) = &*self.closed_view() {
            return Ok(closed.lag.clone()?);
        }
        let consumer = self.consumer()?;
        let deadline = Instant::now() + ASSIGNMENT_WAIT;
        while !py.detach(|| consumer.wait_assigned(wait::SLICE)) && Instant::now() < deadline {
            between_slices(py, self.oauth.as_deref())?;
        }
        Ok(self.in_background(py, move || consumer.lag())??)
    }

    /// Counters: delivered, skipped, dead_lettered, committed, commit_failures,
    /// dropped_on_revoke, rebalances, broker_disconnects, buffered_bytes (a level), buffer_full.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = match &*self.closed_view() {
            Some(closed) => closed.stats.clone(),
            None => self.with(py, |consumer| Ok(consumer.stats()))?,
        };
        let dict = PyDict::new(py);
        for (name, value) in stats {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }

    /// Take the messages set aside under `on_decode_error="dead_letter"` since the last call.
    fn dead_letters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let dead = self.with(py, |consumer| Ok(consumer.take_dead_letters()))?;
        let list = PyList::empty(py);
        for letter in dead {
            list.append(PyDeadLetter::new(py, letter)?)?;
        }
        Ok(list)
    }

    /// Iterate over Arrow batches (`ChangeBatch`) instead of single changes: each holds changes
    /// of one table under one value schema, at most `max_rows`, handed over at the latest
    /// `max_wait` seconds after its first change arrived. Asking for the next batch finishes
    /// the previous one.
    #[pyo3(signature = (max_rows = 10_000, max_wait = 1.0))]
    fn batches(&self, max_rows: usize, max_wait: f64) -> PyResult<PyBatchIterator> {
        if max_rows == 0 {
            return Err(config_error("max_rows must be at least 1".into()));
        }
        let max_wait = seconds("max_wait", max_wait)?;
        Ok(PyBatchIterator::new(
            self.consumer()?,
            max_rows,
            max_wait,
            self.progress.clone(),
            self.waiters.clone(),
            self.oauth.clone(),
        ))
    }

    /// Stop fetching, commit the finished positions and leave the group. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.close_committing(py, true)
    }

    /// `async for`: an async iterator of its own type (`async_changes`), whose steps take
    /// the changes already fetched and wait only when there are none.
    fn __aiter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        async_changes(slf)
    }

    /// An awaitable of the next change: it takes one when awaited (not before), and
    /// cancelling it loses nothing.
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        async_changes(slf)
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Ready::value(slf.py(), slf.clone().into_any())
    }

    /// Closes as `__exit__` does, on a blocking thread of the runtime while the event loop
    /// runs its other tasks: with the broker away, the closing commit waits up to the
    /// session timeout.
    #[pyo3(signature = (*exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_info: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let closing = PyClosing {
            stream: slf.clone().unbind(),
            propagating: propagating(exc_info),
            closed: Arc::default(),
            started: Arc::default(),
        };
        Ok(Bound::new(slf.py(), closing)?.into_any())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes the stream. When an exception leaves the block, nothing more is committed: the
    /// change being processed, and whatever was finished since the last periodic commit, are
    /// delivered again by the next run.
    #[pyo3(signature = (*exc_info))]
    fn __exit__(&self, py: Python<'_>, exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        let propagating = propagating(exc_info);
        exited(self.close_committing(py, !propagating), propagating)
    }
}

/// Drop what may be the last reference to a consumer without the GIL: destroying the Kafka
/// client joins its threads.
fn let_go(py: Python<'_>, consumer: Arc<ChangeConsumer>) {
    py.detach(move || drop(consumer));
}

/// Whether the `exc_info` of `__exit__` holds an exception on its way out.
fn propagating(exc_info: &Bound<'_, PyTuple>) -> bool {
    exc_info.get_item(0).is_ok_and(|kind| !kind.is_none())
}

/// What leaving a `with` block that closed the stream gives: an exception already on its way
/// out matters more than a failure to close.
fn exited(closed: PyResult<()>, propagating: bool) -> PyResult<()> {
    match closed {
        Err(error) if propagating => {
            log::warn!("closing the stream after an error: {error}");
            Ok(())
        }
        other => other,
    }
}

/// A stream's close and the lag it left, once a background thread has them.
type Closed = Option<(
    crate::Result<()>,
    crate::Result<HashMap<(String, i32), i64>>,
)>;

/// The awaitable `__aexit__` returns. Its first step starts the close on a blocking thread of
/// the runtime and yields an asyncio future completed when the close is done; the step after
/// that finishes closing on the loop's thread. Cancelled, the close goes on in the background
/// (and stands or fails there), as a `close()` interrupted by Ctrl-C does.
#[pyclass(frozen)]
struct PyClosing {
    stream: Py<PyChangeStream>,
    propagating: bool,
    closed: Arc<Mutex<Closed>>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

#[pymethods]
impl PyClosing {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// One step of the awaiting task: `StopIteration(None)` when the stream is closed,
    /// otherwise the future to wait on.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream.get();
        let Some(consumer) = stream.lock().clone() else {
            return Err(PyStopIteration::new_err((py.None(),)));
        };
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((closed, lag)) = closed {
            let closed = stream.closed(py, &consumer, closed, lag);
            let_go(py, consumer);
            exited(closed, self.propagating)?;
            return Err(PyStopIteration::new_err((py.None(),)));
        }
        let (closed, started) = (self.closed.clone(), self.started.clone());
        let commit = !self.propagating;
        // Started at most once: a wait of the stream's already running (another task's
        // `async for`) runs instead, and the next step starts the close.
        let close = move || {
            if !started.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let outcome = consumer.close(commit);
                let lag = consumer.lag();
                *closed.lock().unwrap_or_else(|e| e.into_inner()) = Some((outcome, lag));
            }
        };
        yielded(stream.waiters.future(py, close)?)
    }
}

/// A stream dropped unclosed is no longer watched by its event loop either.
impl Drop for PyChangeStream {
    fn drop(&mut self) {
        // A stream dropped open closes here, committing what was finished; with the broker
        // down that commit waits up to the session timeout, so it waits without the GIL.
        let consumer = self.lock().take();
        Python::attach(|py| {
            self.waiters.detach(py);
            py.detach(move || drop(consumer));
        });
    }
}

impl PyChangeStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<ChangeConsumer>>> {
        self.consumer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open consumer.
    fn consumer(&self) -> PyResult<Arc<ChangeConsumer>> {
        Ok(self.lock().clone().ok_or(Error::Closed)?)
    }

    fn closed_view(&self) -> std::sync::MutexGuard<'_, Option<ClosedView>> {
        self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close (committing what was finished, if `commit`), keeping what the stream can still
    /// tell afterwards.
    fn close_committing(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        let Some(consumer) = self.lock().clone() else {
            return Ok(());
        };
        let closing = consumer.clone();
        let (closed, lag) = self.in_background(py, move || {
            let closed = closing.close(commit);
            (closed, closing.lag())
        })?;
        let closed = self.closed(py, &consumer, closed, lag);
        let_go(py, consumer);
        closed
    }

    /// Finish closing on the application's side once `consumer` closed (or failed to): keep
    /// what the stream reports after it, and let go of the consumer.
    fn closed(
        &self,
        py: Python<'_>,
        consumer: &Arc<ChangeConsumer>,
        closed: crate::Result<()>,
        lag: crate::Result<HashMap<(String, i32), i64>>,
    ) -> PyResult<()> {
        if closed.is_ok() {
            self.progress.show(py, consumer, true)?;
            *self.closed_view() = Some(ClosedView {
                positions: consumer.positions(),
                lag,
                stats: consumer.stats(),
            });
        }
        // Forked: the consumer is of the parent process; it stays open there.
        if !matches!(closed, Err(Error::Forked { .. })) {
            self.lock().take();
            self.waiters.detach(py);
        }
        Ok(closed?)
    }

    /// A change already fetched (`Some(Some)`), the end (`Some(None)`), or nothing yet.
    fn take_ready<'py>(&self, py: Python<'py>) -> PyResult<Option<Option<Bound<'py, PyChange>>>> {
        let consumer = self.consumer()?;
        oauth::serve(py, self.oauth.as_deref())?;
        match consumer.next_ready()? {
            Some(Next::Change(change)) => {
                self.progress.show(py, &consumer, false)?;
                Ok(Some(Some(PyChange::new(py, change)?)))
            }
            Some(Next::End) => {
                self.progress.show(py, &consumer, true)?;
                Ok(Some(None))
            }
            Some(Next::Pending) | None => Ok(None),
        }
    }

    /// One step of awaiting the next change: the change, the end, or a future to wait for.
    pub(crate) fn step<'py>(&self, py: Python<'py>) -> PyResult<Step<'py>> {
        Ok(match self.take_ready(py)? {
            Some(Some(change)) => Step::Change(change.into_any()),
            Some(None) => Step::End,
            None => {
                let consumer = self.consumer()?;
                let future = self
                    .waiters
                    .rung(py, wait::SLICE, || consumer.ring_when_ready())?;
                Step::Wait(yielded(future)?)
            }
        })
    }

    /// Run `f` on the open consumer with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&ChangeConsumer) -> crate::Result<T> + Send,
    ) -> PyResult<T> {
        let consumer = self.consumer()?;
        Ok(py.detach(|| f(&consumer))?)
    }

    /// Run `work` (a commit, closing, measuring the lag) in the background and wait for it,
    /// answering signals and token requests meanwhile.
    fn in_background<T: Send + 'static>(
        &self,
        py: Python<'_>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> PyResult<T> {
        wait::in_background(py, work, |py| between_slices(py, self.oauth.as_deref()))
    }

    /// Wait up to `timeout` (forever if None) for the next change; None when it ended.
    fn wait<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<Duration>,
    ) -> PyResult<Option<Bound<'py, PyChange>>> {
        // A change already fetched is handed out without releasing the GIL: taking it never
        // blocks, and releasing and retaking the GIL would cost more than the rest.
        if let Some(taken) = self.take_ready(py)? {
            return Ok(taken);
        }
        let consumer = self.consumer()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(wait::SLICE),
                None => wait::SLICE,
            };
            match py.detach(|| consumer.next(slice))? {
                Next::Change(change) => {
                    self.progress.show(py, &consumer, false)?;
                    return PyChange::new(py, change).map(Some);
                }
                Next::End => {
                    self.progress.show(py, &consumer, true)?;
                    return Ok(None);
                }
                Next::Pending => {
                    between_slices(py, self.oauth.as_deref())?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// What a stream's wait does between its slices: let signals interrupt it, and run `oauth_cb`
/// when librdkafka asks for a token.
fn between_slices(py: Python<'_>, oauth: Option<&TokenCallback>) -> PyResult<()> {
    wait::interrupted(py)?;
    oauth::serve(py, oauth)
}

/// An awaitable that is already done: it returns a value (`async with`).
#[pyclass(frozen)]
struct Ready {
    value: Py<PyAny>,
}

impl Ready {
    fn value<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(
            py,
            Ready {
                value: value.unbind(),
            },
        )?
        .into_any())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Finish at once: `StopIteration(value)` is how an awaitable returns its value (the
    /// value is never a tuple, which would be unpacked).
    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        Err(PyStopIteration::new_err(self.value.clone_ref(py)))
    }
}

/// A message that could not be decoded, kept raw (`on_decode_error="dead_letter"`).
#[pyclass(name = "DeadLetter", module = "changestream", frozen, get_all)]
pub(crate) struct PyDeadLetter {
    /// The Kafka topic of the message.
    topic: String,
    /// The Kafka partition of the message.
    partition: i32,
    /// The message's offset in its partition.
    offset: i64,
    /// The Kafka message timestamp (timezone-aware, UTC), if it has one.
    timestamp: Option<Py<PyAny>>,
    /// The raw key bytes.
    key: Option<Py<PyBytes>>,
    /// The raw value bytes.
    value: Option<Py<PyBytes>>,
    /// The message headers, raw.
    headers: Vec<(String, Option<Py<PyBytes>>)>,
    /// Why the message could not be decoded.
    error: Py<PyAny>,
}

impl PyDeadLetter {
    fn new(py: Python<'_>, letter: DeadLetter) -> PyResult<PyDeadLetter> {
        let bytes = |b: Option<Vec<u8>>| b.map(|b| PyBytes::new(py, &b).unbind());
        let position = letter.position;
        Ok(PyDeadLetter {
            timestamp: position
                .timestamp_ms
                .map(|ms| utc_datetime(py, ms).map(Bound::unbind))
                .transpose()?,
            topic: position.topic.to_string(),
            partition: position.partition,
            offset: position.offset,
            key: bytes(letter.key),
            value: bytes(letter.value),
            headers: letter
                .headers
                .into_iter()
                .map(|(k, v)| (k, bytes(v)))
                .collect(),
            error: PyErr::from(letter.error).into_value(py).into_any(),
        })
    }
}

#[pymethods]
impl PyDeadLetter {
    fn __repr__(&self) -> String {
        format!(
            "DeadLetter(topic={:?}, partition={}, offset={})",
            self.topic, self.partition, self.offset
        )
    }
}

pub(super) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| config_error(format!("{name} must be a non-negative number of seconds")))
}

/// Milliseconds since the epoch of an aware `datetime`.
fn epoch_millis(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let Ok(datetime) = value.cast::<PyDateTime>() else {
        return Ok(None);
    };
    if datetime.getattr("tzinfo")?.is_none() {
        return Err(config_error(format!(
            "{name} must be a timezone-aware datetime (a naive one is ambiguous)"
        )));
    }
    let seconds: f64 = datetime.call_method0("timestamp")?.extract()?;
    Ok(Some((seconds * 1000.0).round() as i64))
}

fn parse_start(start: Option<&Bound<'_, PyAny>>, uses_group: bool) -> PyResult<Start> {
    let Some(start) = start else {
        return Ok(if uses_group {
            Start::Committed
        } else {
            Start::Earliest
        });
    };
    if let Ok(name) = start.cast::<PyString>() {
        return match name.to_str()? {
            "committed" => Ok(Start::Committed),
            "earliest" => Ok(Start::Earliest),
            "latest" => Ok(Start::Latest),
            other => Err(config_error(format!(
                "start must be \"committed\", \"earliest\", \"latest\", a datetime or a mapping \
                 of (topic, partition) to offset, not {other:?}"
            ))),
        };
    }
    if let Some(ms) = epoch_millis("start", start)? {
        return Ok(Start::Time(ms));
    }
    let offsets: HashMap<(String, i32), i64> = start.extract().map_err(|_| {
        config_error(
            "start must be a str, a datetime or a mapping {(topic, partition): offset}".into(),
        )
    })?;
    Ok(Start::Offsets(offsets))
}

fn parse_until(until: Option<&Bound<'_, PyAny>>) -> PyResult<Until> {
    let Some(until) = until else {
        return Ok(Until::Forever);
    };
    if let Some(ms) = epoch_millis("until", until)? {
        return Ok(Until::Time(ms));
    }
    match until.extract::<String>().as_deref() {
        Ok("end") => Ok(Until::End),
        _ => Err(config_error(format!(
            "until must be None, \"end\" or a datetime, not {}",
            until.repr()?
        ))),
    }
}

/// `reader_schema=`: one schema (JSON text or a dict) for every topic's values, or a mapping
/// of topic to schema.
fn reader_schemas(given: &Bound<'_, PyAny>) -> PyResult<ReaderSchemas> {
    let parse = |schema: &Bound<'_, PyAny>| -> PyResult<Arc<Schema>> {
        let text = match schema.cast::<PyString>() {
            Ok(text) => text.to_str()?.to_owned(),
            Err(_) => schema
                .py()
                .import("json")?
                .call_method1("dumps", (schema,))?
                .extract()?,
        };
        Schema::parse(&text)
            .map(Arc::new)
            .map_err(|e| config_error(format!("reader_schema is not a usable Avro schema: {e}")))
    };
    let is_one_schema = given.cast::<PyString>().is_ok()
        || given
            .cast::<PyDict>()
            .is_ok_and(|d| d.contains("type").unwrap_or(false));
    if is_one_schema {
        return Ok(ReaderSchemas {
            all: Some(parse(given)?),
            by_topic: HashMap::new(),
        });
    }
    let mut by_topic = HashMap::new();
    for item in given.call_method0("items")?.try_iter()? {
        let (topic, schema): (String, Bound<'_, PyAny>) = item?.extract()?;
        by_topic.insert(topic, parse(&schema)?);
    }
    Ok(ReaderSchemas {
        all: None,
        by_topic,
    })
}

pub(super) fn topic_list(topics: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(topic) = topics.cast::<PyString>() {
        return Ok(vec![topic.to_str()?.to_owned()]);
    }
    let names = || -> PyResult<Vec<String>> {
        topics.try_iter()?.map(|t| t?.extract::<String>()).collect()
    };
    names().map_err(|_| {
        Error::ArgumentType("topics must be a str or a sequence of str".to_owned()).into()
    })
}

/// Client settings (librdkafka's, the registry client's) from a mapping, values as strings.
pub(crate) fn settings(mapping: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut settings = Vec::new();
    for item in mapping.call_method0("items")?.try_iter()? {
        let (key, value): (String, Bound<'_, PyAny>) = item?.extract()?;
        let value = if let Ok(flag) = value.cast::<PyBool>() {
            if flag.is_true() { "true" } else { "false" }.to_owned()
        } else {
            value.str()?.to_str()?.to_owned()
        };
        settings.push((key, value));
    }
    Ok(settings)
}
