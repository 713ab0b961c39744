//! `changestream.ChangeBatch` and `BatchIterator`, what `ChangeStream.batches()` returns.
//!
//! A batch is built in Rust ([`crate::arrow::record_batch`]) with the GIL released, and handed
//! to Python through the Arrow PyCapsule interface (pyo3-arrow does the C data interface), so
//! pyarrow, polars, pandas and DuckDB read its buffers without a copy and without changestream
//! depending on any of them.
//!
//! Asking for the next batch finishes the previous one (its positions may be committed). The
//! waiting happens in slices of at most 100 ms ([`Batches::slice`]), one at a time, and every
//! slice leaves what it got (a batch, the end, an error) in [`Batches`]' state, where a call
//! for the next batch takes it. The blocking iterator runs slices itself, checking for Ctrl-C
//! between them. The async iterator runs slices through [`super::aio`]: the batch is taken
//! from the state inside the awaiting task's own step, so a cancelled `__anext__` leaves it
//! there for the next call: nothing is lost, and nothing is finished that Python did not get.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_schema::{ArrowError, Field};
use pyo3::exceptions::{PyImportError, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};
use pyo3_arrow::ffi::{
    to_array_pycapsules, to_schema_pycapsule, to_stream_pycapsule, ArrayIterator,
};

use super::aio::{yielded, Waiters};
use super::oauth::{self, TokenCallback};
use super::progress::Progress;
use super::wait;
use crate::kafka::{ChangeConsumer, NextBatch};
use crate::name::Name;

/// A batch built without the GIL, on its way to Python.
struct Built {
    batch: RecordBatch,
    table: Option<Name>,
    schema_id: Option<u32>,
}

/// What `stream.batches()` iterates over, shared by the iterator and the slices in flight.
struct Batches {
    consumer: Arc<ChangeConsumer>,
    max_rows: usize,
    max_wait: Duration,
    state: Mutex<State>,
    /// Held for the whole of a slice, so slices never overlap.
    slice: Mutex<()>,
}

/// What the slices got and no call has taken yet.
#[derive(Default)]
struct State {
    /// Built batches, in log order.
    ready: VecDeque<Built>,
    /// Why the last slice failed: raised by the next call.
    failed: Option<crate::Error>,
    /// A bounded stream ended.
    ended: bool,
}

/// What a call for the next batch finds.
enum Taken {
    Batch(Built),
    End,
}

impl Batches {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the slices left for this call: a batch, the end, or the stream's failure.
    fn take(state: &mut State) -> crate::Result<Option<Taken>> {
        if let Some(built) = state.ready.pop_front() {
            return Ok(Some(Taken::Batch(built)));
        }
        if let Some(error) = state.failed.take() {
            // As the row iterator: a failed stream fails every call after, a batch that could
            // not be built is skipped (and finished) by the next call.
            return Err(error);
        }
        Ok(state.ended.then_some(Taken::End))
    }

    /// Wait at most one slice for the next batch (asking for it finishes the previous one),
    /// build it, and leave the outcome in the state.
    fn slice(&self) {
        let _one_at_a_time = self.slice.lock().unwrap_or_else(|e| e.into_inner());
        {
            let state = self.state();
            // Something is waiting to be taken: asking for more would finish it unseen.
            if !state.ready.is_empty() || state.failed.is_some() || state.ended {
                return;
            }
        }
        let outcome = self
            .consumer
            .next_batch(self.max_rows, self.max_wait, wait::SLICE)
            .and_then(|next| match next {
                NextBatch::Batch(batch) => {
                    let (table, schema_id) = (batch.table(), batch.schema_id());
                    let built = batch.record_batches()?.into_iter().map(|batch| Built {
                        batch,
                        table,
                        schema_id,
                    });
                    Ok(Some(built.collect::<Vec<_>>()))
                }
                NextBatch::Pending => Ok(Some(Vec::new())),
                NextBatch::End => Ok(None),
            });
        let mut state = self.state();
        match outcome {
            Ok(Some(built)) => state.ready.extend(built),
            Ok(None) => state.ended = true,
            Err(error) => state.failed = Some(error),
        }
    }
}

/// Iterates (`for`, `async for`) over [`PyChangeBatch`]es of a stream.
#[pyclass(name = "BatchIterator", module = "changestream", frozen)]
pub(crate) struct PyBatchIterator {
    batches: Arc<Batches>,
    waiters: Arc<Waiters>,
    progress: Progress,
    /// The stream's `oauth_cb`, run when librdkafka asks for a token.
    oauth: Option<Arc<TokenCallback>>,
}

impl PyBatchIterator {
    pub(crate) fn new(
        consumer: Arc<ChangeConsumer>,
        max_rows: usize,
        max_wait: Duration,
        progress: Progress,
        waiters: Arc<Waiters>,
        oauth: Option<Arc<TokenCallback>>,
    ) -> PyBatchIterator {
        consumer.read_in_batches(max_rows);
        PyBatchIterator {
            batches: Arc::new(Batches {
                consumer,
                max_rows,
                max_wait,
                state: Mutex::new(State::default()),
                slice: Mutex::new(()),
            }),
            waiters,
            progress,
            oauth,
        }
    }

    /// What the slices left: a batch (progress shown), the end (progress closed), or nothing.
    fn take(&self, py: Python<'_>) -> PyResult<Option<Taken>> {
        oauth::serve(py, self.oauth.as_deref())?;
        let taken = Batches::take(&mut self.batches.state())?;
        if let Some(taken) = &taken {
            let ended = matches!(taken, Taken::End);
            self.progress.show(py, &self.batches.consumer, ended)?;
        }
        Ok(taken)
    }
}

#[pymethods]
impl PyBatchIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next batch, waiting in slices with the GIL released so Ctrl-C interrupts.
    fn __next__(&self, py: Python<'_>) -> PyResult<PyChangeBatch> {
        loop {
            match self.take(py)? {
                Some(Taken::Batch(built)) => return Ok(built.into()),
                Some(Taken::End) => return Err(PyStopIteration::new_err(())),
                None => {}
            }
            py.detach(|| self.batches.slice());
            wait::interrupted(py)?;
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// An awaitable for the next batch. Cancelling it loses nothing.
    fn __anext__(slf: Py<Self>) -> PyNextBatch {
        PyNextBatch { iterator: slf }
    }
}

/// The awaitable `BatchIterator.__anext__` returns. Each step of the awaiting task takes a
/// batch if a slice left one, or starts a slice and yields an asyncio future it completes.
#[pyclass(frozen)]
struct PyNextBatch {
    iterator: Py<PyBatchIterator>,
}

#[pymethods]
impl PyNextBatch {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// One step of the awaiting task: `StopIteration(batch)` returns the batch from `await`;
    /// otherwise the future to wait on.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let iterator = self.iterator.get();
        match iterator.take(py)? {
            Some(Taken::Batch(built)) => {
                let batch = Bound::new(py, PyChangeBatch::from(built))?;
                Err(PyStopIteration::new_err((batch.unbind(),)))
            }
            Some(Taken::End) => Err(PyStopAsyncIteration::new_err(())),
            None => {
                let batches = iterator.batches.clone();
                yielded(iterator.waiters.future(py, move || batches.slice())?)
            }
        }
    }
}

/// Changes of one table under one schema as an Arrow record batch.
#[pyclass(name = "ChangeBatch", module = "changestream", frozen)]
pub(crate) struct PyChangeBatch {
    batch: RecordBatch,
    table: Option<Name>,
    schema_id: Option<u32>,
}

impl From<Built> for PyChangeBatch {
    fn from(built: Built) -> Self {
        PyChangeBatch {
            batch: built.batch,
            table: built.table,
            schema_id: built.schema_id,
        }
    }
}

impl PyChangeBatch {
    /// The batch as one struct array with its field, as the C data interface carries a batch.
    fn as_struct(&self) -> (Arc<Field>, ArrayRef) {
        let schema = self.batch.schema_ref();
        let field = Field::new_struct("", schema.fields().clone(), false)
            .with_metadata(schema.metadata().clone());
        let array: ArrayRef = Arc::new(StructArray::from(self.batch.clone()));
        (Arc::new(field), array)
    }
}

#[pymethods]
impl PyChangeBatch {
    /// The table the changes belong to.
    #[getter]
    fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// The registry id of the value schema the changes were written with.
    #[getter]
    fn schema_id(&self) -> Option<u32> {
        self.schema_id
    }

    /// How many changes (rows) the batch holds.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }

    /// The Arrow schema, as an `arrow_schema` PyCapsule.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        Ok(to_schema_pycapsule(py, self.batch.schema_ref().as_ref())?)
    }

    /// The batch as a struct array: `(arrow_schema, arrow_array)` PyCapsules.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyCapsule>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (field, array) = self.as_struct();
        Ok(to_array_pycapsules(py, field, &array, requested_schema)?)
    }

    /// The batch as a stream of one struct array (what DuckDB and `pyarrow.table` read).
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyCapsule>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let (field, array) = self.as_struct();
        let reader = Box::new(ArrayIterator::new(vec![Ok(array)], field));
        Ok(to_stream_pycapsule(py, reader, requested_schema)?)
    }

    /// A `pyarrow.RecordBatch` of the same buffers (needs pyarrow: `changestream[pyarrow]`).
    fn to_pyarrow<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        needs(slf.py(), "pyarrow", "pyarrow", "to_pyarrow")?.call_method1("record_batch", (slf,))
    }

    /// A `pandas.DataFrame` through pyarrow (needs both: `changestream[pandas]`); keyword
    /// arguments go to `pyarrow.RecordBatch.to_pandas`.
    #[pyo3(signature = (**kwargs))]
    fn to_pandas<'py>(
        slf: &Bound<'py, Self>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        needs(py, "pandas", "pandas", "to_pandas")?;
        needs(py, "pyarrow", "pandas", "to_pandas")?
            .call_method1("record_batch", (slf,))?
            .call_method("to_pandas", (), kwargs)
    }

    /// A `polars.DataFrame` of the same buffers (needs polars: `changestream[polars]`). polars has no calendar
    /// interval and no 256-bit decimal, and panics on meeting them: such columns become a
    /// `{months, days, nanoseconds}` struct and decimal text.
    fn to_polars<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let polars = needs(py, "polars", "polars", "to_polars")?;
        let this = slf.get();
        let batch = py
            .detach(|| crate::arrow::polars_compatible(&this.batch))
            .map_err(pyo3_arrow::error::PyArrowError::from)?;
        if batch.schema() == this.batch.schema() {
            return polars.call_method1("DataFrame", (slf,));
        }
        let compatible = PyChangeBatch {
            batch,
            table: this.table,
            schema_id: this.schema_id,
        };
        polars.call_method1("DataFrame", (compatible,))
    }

    /// The HTML a notebook shows: the table, the schema, and the first rows.
    fn _repr_html_(&self) -> PyResult<String> {
        Ok(
            batch_html(&self.batch, self.table.as_deref(), self.schema_id)
                .map_err(pyo3_arrow::error::PyArrowError::from)?,
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "ChangeBatch(table={:?}, schema_id={}, num_rows={})",
            self.table.as_deref().unwrap_or(""),
            self.schema_id
                .map_or_else(|| "None".to_owned(), |id| id.to_string()),
            self.batch.num_rows()
        )
    }
}

/// `module`, or an ImportError that says which extra of the package provides it.
fn needs<'py>(
    py: Python<'py>,
    module: &str,
    extra: &str,
    method: &str,
) -> PyResult<Bound<'py, PyModule>> {
    py.import(module).map_err(|error| {
        if !error.is_instance_of::<PyImportError>(py) {
            return error;
        }
        let message = format!(
            "ChangeBatch.{method}() needs {module}: pip install 'changestream[{extra}]' \
             (or {module} itself)"
        );
        super::errors::missing_module(py, error, module, message)
    })
}

/// How many rows the notebook preview shows.
const PREVIEW_ROWS: usize = 10;

/// The notebook preview of a batch: a caption, the schema (column names with their Arrow
/// types, in the header) and the first rows.
fn batch_html(
    batch: &RecordBatch,
    table: Option<&str>,
    schema_id: Option<u32>,
) -> Result<String, ArrowError> {
    use std::fmt::Write as _;

    let options = arrow_cast::display::FormatOptions::default().with_null("null");
    let formatters = batch
        .columns()
        .iter()
        .map(|column| arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut html = String::from("<div><table>");
    let _ = write!(
        html,
        "<caption style=\"text-align:left\">ChangeBatch <b>{}</b> &middot; schema id {} &middot; {} rows</caption><thead><tr>",
        escape(table.unwrap_or("")),
        schema_id.map_or_else(|| "none".to_owned(), |id| id.to_string()),
        batch.num_rows(),
    );
    for field in batch.schema_ref().fields() {
        let _ = write!(
            html,
            "<th>{}<br><small>{}</small></th>",
            escape(field.name()),
            escape(&field.data_type().to_string())
        );
    }
    html.push_str("</tr></thead><tbody>");
    for row in 0..batch.num_rows().min(PREVIEW_ROWS) {
        html.push_str("<tr>");
        for formatter in &formatters {
            let _ = write!(
                html,
                "<td>{}</td>",
                escape(&formatter.value(row).try_to_string()?)
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    if batch.num_rows() > PREVIEW_ROWS {
        let _ = write!(
            html,
            "<p>first {PREVIEW_ROWS} of {} rows</p>",
            batch.num_rows()
        );
    }
    html.push_str("</div>");
    Ok(html)
}

/// Text as HTML.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}
