//! `async for change in stream`: the stream's async iterator, a small type with an `am_send` slot.
//!
//! On Python 3.10 and 3.11, awaiting asks the awaitable's `am_send` for its value when the type
//! has one (`PyIter_Send`), and otherwise calls `__next__` and takes the value out of the
//! `StopIteration` it raises. An async generator, and any awaitable pyo3 can declare, goes the
//! second way, so every change handed out costs an exception object made and taken apart again.
//! Through `am_send` a ready change is returned as a plain value. pyo3 declares no `am_send`,
//! so this type is made here from a `PyType_Spec` in the stable ABI (the slot is in it from
//! Python 3.10, this module's oldest). From 3.12 the interpreter calls `__next__` (so the
//! change comes in a `StopIteration` there), and the type still saves the generator's frame.
//!
//! Each step takes a change already fetched and decoded, never blocking. When none is, it
//! yields an asyncio future ([`super::aio`]), and the task steps it again once the future is
//! done. Nothing is taken before the step that returns it, so a cancelled `await` (its
//! `CancelledError` is raised at the `await` itself, as the type has no `throw`) loses nothing.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use super::stream::PyChangeStream;

/// What one step of awaiting the next change gives.
pub(crate) enum Step<'py> {
    /// The next change.
    Change(Bound<'py, PyAny>),
    /// Nothing fetched yet: this asyncio future (marked as blocking) completes when something
    /// may have arrived.
    Wait(Bound<'py, PyAny>),
    /// A bounded stream has delivered everything.
    End,
}

/// `am_send`'s signature (pyo3's bindings name it only outside the stable ABI).
type SendFunc = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut *mut ffi::PyObject,
) -> ffi::PySendResult;

/// An instance: the object header, then the stream (set right after allocation).
#[repr(C)]
struct AsyncChanges {
    header: ffi::PyObject,
    stream: Option<Py<PyChangeStream>>,
}

/// A new async iterator (and awaitable of the next change) over `stream`.
pub(crate) fn async_changes<'py>(
    stream: &Bound<'py, PyChangeStream>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = stream.py();
    let class = class(py)?;
    // SAFETY: `class` is this module's type, whose instances are `AsyncChanges`;
    // `PyType_GenericAlloc` returns one zeroed (its `stream` is `None`) or NULL with an error
    // set, and `ptr::write` puts the stream in without reading what was there.
    unsafe {
        let object = ffi::PyType_GenericAlloc(class.as_type_ptr(), 0);
        let object = Bound::from_owned_ptr_or_err(py, object)?;
        let fields = object.as_ptr().cast::<AsyncChanges>();
        ptr::write(&raw mut (*fields).stream, Some(stream.clone().unbind()));
        Ok(object)
    }
}

/// The type, made once.
fn class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    const NAME: &CStr = c"changestream.AsyncChanges";
    const DOC: &CStr = c"The changes of a stream, awaited one by one (`async for`).";
    CLASS
        .get_or_try_init(py, || {
            let this = itself as ffi::unaryfunc as *mut c_void;
            let mut slots = [
                slot(
                    ffi::Py_tp_dealloc,
                    dealloc as ffi::destructor as *mut c_void,
                ),
                slot(ffi::Py_tp_doc, DOC.as_ptr() as *mut c_void),
                slot(ffi::Py_am_aiter, this),
                slot(ffi::Py_am_anext, this),
                slot(ffi::Py_am_await, this),
                slot(ffi::Py_am_send, send as SendFunc as *mut c_void),
                // `yield from` it (asyncio wraps an awaitable that is no coroutine in one).
                slot(ffi::Py_tp_iter, this),
                slot(
                    ffi::Py_tp_iternext,
                    next as ffi::iternextfunc as *mut c_void,
                ),
                ffi::PyType_Slot::default(),
            ];
            let mut spec = ffi::PyType_Spec {
                // Kept by the type as its `tp_name`: a static string.
                name: NAME.as_ptr(),
                basicsize: c_int::try_from(size_of::<AsyncChanges>()).expect("a small struct"),
                itemsize: 0,
                flags: c_uint::try_from(
                    ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION,
                )
                .expect("flags of the stable ABI"),
                slots: slots.as_mut_ptr(),
            };
            // SAFETY: the spec and its slots are valid for the call; CPython copies what it
            // keeps of them but the name, which is static.
            let class =
                unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec)) }?;
            Ok(class.cast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py))
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// `__aiter__`, `__anext__`, `__await__` and `__iter__`: the object is its own iterator and
/// awaitable.
unsafe extern "C" fn itself(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with a live object and the thread attached.
    unsafe { ffi::Py_IncRef(object) };
    object
}

unsafe extern "C" fn dealloc(object: *mut ffi::PyObject) {
    // SAFETY: called by CPython once, when the last reference to an `AsyncChanges` of this
    // heap type went (so the instance holds a reference to its type, dropped last).
    unsafe {
        let class = ffi::Py_TYPE(object);
        ptr::drop_in_place(&raw mut (*object.cast::<AsyncChanges>()).stream);
        ffi::PyObject_Free(object.cast());
        ffi::Py_DecRef(class.cast());
    }
}

/// `am_send`: the change as the awaitable's return value, or a future to wait for.
unsafe extern "C" fn send(
    object: *mut ffi::PyObject,
    _sent: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: called by CPython with the thread attached and `result` writable.
    unsafe {
        let py = Python::assume_attached();
        let (outcome, pointer) = match stepped(py, object) {
            Ok(Step::Change(change)) => (ffi::PySendResult::PYGEN_RETURN, change.into_ptr()),
            Ok(Step::Wait(future)) => (ffi::PySendResult::PYGEN_NEXT, future.into_ptr()),
            Ok(Step::End) => {
                PyStopAsyncIteration::new_err(()).restore(py);
                (ffi::PySendResult::PYGEN_ERROR, ptr::null_mut())
            }
            Err(error) => {
                error.restore(py);
                (ffi::PySendResult::PYGEN_ERROR, ptr::null_mut())
            }
        };
        *result = pointer;
        outcome
    }
}

/// `__next__`, for whoever steps the awaitable without `am_send`: the change in a
/// `StopIteration`, as awaitables return values.
unsafe extern "C" fn next(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the thread attached.
    unsafe {
        let py = Python::assume_attached();
        let error = match stepped(py, object) {
            Ok(Step::Wait(future)) => return future.into_ptr(),
            // The change goes in bare: it is never a tuple, which would be unpacked.
            Ok(Step::Change(change)) => PyStopIteration::new_err(change.unbind()),
            Ok(Step::End) => PyStopAsyncIteration::new_err(()),
            Err(error) => error,
        };
        error.restore(py);
        ptr::null_mut()
    }
}

/// One step, with a panic turned into Python's `PanicException` (a panic must not unwind
/// into CPython).
///
/// # Safety
/// `object` is a live `AsyncChanges`.
unsafe fn stepped<'py>(py: Python<'py>, object: *mut ffi::PyObject) -> PyResult<Step<'py>> {
    // SAFETY: per the caller, `object` is an `AsyncChanges`, whose stream is set.
    let stream = unsafe { (*object.cast::<AsyncChanges>()).stream.as_ref() };
    let stream = stream.ok_or_else(|| PanicException::new_err("an iterator with no stream"))?;
    catch_unwind(AssertUnwindSafe(|| stream.get().step(py)))
        .unwrap_or_else(|_| Err(PanicException::new_err("panicked while taking a change")))
}
