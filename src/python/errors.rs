//! The exception tree and the one conversion from [`crate::Error`] to a Python exception.
//!
//! Every exception carries `retriable`, `topic`, `partition` and `offset` attributes (the last
//! three `None` when the error does not concern one message).

use pyo3::exceptions::{PyException, PyImportError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

pyo3::create_exception!(
    changestream,
    ChangeStreamError,
    PyException,
    "Root of every error changestream raises."
);
pyo3::create_exception!(
    changestream,
    DecodeError,
    ChangeStreamError,
    "A message could not be decoded."
);
pyo3::create_exception!(
    changestream,
    SchemaRegistryError,
    ChangeStreamError,
    "The schema registry failed or refused a request."
);
pyo3::create_exception!(
    changestream,
    SchemaNotFoundError,
    SchemaRegistryError,
    "The schema registry has no schema with the id a message names."
);
pyo3::create_exception!(
    changestream,
    KafkaError,
    ChangeStreamError,
    "Kafka reported an error."
);
pyo3::create_exception!(
    changestream,
    ConfigError,
    ChangeStreamError,
    "The configuration is invalid."
);
pyo3::create_exception!(
    changestream,
    PostgresError,
    ChangeStreamError,
    "PostgreSQL refused a request or the connection to it failed (capture)."
);

const ATTRIBUTES: [&str; 3] = ["topic", "partition", "offset"];

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let root = py.get_type::<ChangeStreamError>();
    root.setattr("retriable", false)?;
    for name in ATTRIBUTES {
        root.setattr(name, py.None())?;
    }
    m.add("ChangeStreamError", root)?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("SchemaRegistryError", py.get_type::<SchemaRegistryError>())?;
    m.add("SchemaNotFoundError", py.get_type::<SchemaNotFoundError>())?;
    m.add("KafkaError", py.get_type::<KafkaError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("PostgresError", py.get_type::<PostgresError>())?;
    Ok(())
}

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        let message = error.to_string();
        let exception = match &error {
            Error::Config(_) => ConfigError::new_err(message),
            Error::Decode { .. } => DecodeError::new_err(message),
            Error::SchemaNotFound { .. } => SchemaNotFoundError::new_err(message),
            Error::Registry { .. } => SchemaRegistryError::new_err(message),
            Error::Kafka { .. } => KafkaError::new_err(message),
            Error::Postgres { .. } => PostgresError::new_err(message),
            Error::Closed | Error::Forked { .. } | Error::Internal(_) => {
                ChangeStreamError::new_err(message)
            }
            // Python's own exceptions for misuse, as every library raises them.
            Error::ArgumentType(_) => return PyTypeError::new_err(message),
            Error::ArgumentValue(_) => return PyValueError::new_err(message),
        };
        Python::attach(|py| {
            let value = exception.value(py);
            let set = || -> PyResult<()> {
                value.setattr("retriable", error.is_retriable())?;
                if let Some(at) = error.location() {
                    value.setattr("topic", &at.topic)?;
                    value.setattr("partition", at.partition)?;
                    value.setattr("offset", at.offset)?;
                }
                Ok(())
            };
            if let Err(failure) = set() {
                return failure;
            }
            exception
        })
    }
}

/// The `ImportError` for an optional module that is not installed: names the extra that
/// brings it, keeps `name` (the module) and the original import failure as its cause.
pub(crate) fn missing_module(
    py: Python<'_>,
    failure: PyErr,
    module: &str,
    message: String,
) -> PyErr {
    let needed = PyImportError::new_err((message,));
    let _ = needed.value(py).setattr("name", module);
    needed.set_cause(py, Some(failure));
    needed
}
