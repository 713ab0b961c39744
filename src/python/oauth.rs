//! `oauth_cb=`: the application's SASL/OAUTHBEARER token callback, run on the application's
//! thread.
//!
//! The callback runs once when the stream opens (so the first connection has its token) and
//! again whenever librdkafka asks for a fresh token ([`OAuthTokens::requested`]): the
//! stream's blocking and async waits check for that between their slices and before handing
//! out a change or a batch, so it runs at most one slice (100 ms) after the request while the
//! application reads. No Rust thread calls it (see `crate::kafka::oauth`).

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::error::Error;
use crate::kafka::{OAuthToken, OAuthTokens};

/// The callback, its argument, and where its tokens go.
pub(crate) struct TokenCallback {
    /// `None` once the garbage collector has cleared it (see [`TokenCallback::traverse`]).
    callback: Mutex<Option<Py<PyAny>>>,
    /// librdkafka's `sasl.oauthbearer.config`, passed to the callback as confluent-kafka does.
    config: String,
    tokens: Arc<OAuthTokens>,
}

impl TokenCallback {
    /// Check the callback is callable and fetch the first token.
    pub(crate) fn start(
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        config: String,
    ) -> PyResult<TokenCallback> {
        if !callback.is_callable() {
            return Err(Error::Config(format!(
                "oauth_cb must be a callable, not {}",
                callback.get_type().name()?
            ))
            .into());
        }
        let callback = TokenCallback {
            callback: Mutex::new(Some(callback.clone().unbind())),
            config,
            tokens: Arc::default(),
        };
        callback.refresh(py)?;
        Ok(callback)
    }

    /// What the consumer takes its tokens from.
    pub(crate) fn tokens(&self) -> Arc<OAuthTokens> {
        self.tokens.clone()
    }

    /// Run the callback if librdkafka asked for a token.
    pub(crate) fn serve(&self, py: Python<'_>) -> PyResult<()> {
        if self.tokens.requested() {
            self.refresh(py)?;
        }
        Ok(())
    }

    /// Run the callback and hand its token over. When it raises or returns something else
    /// than a token, librdkafka is told why (which fails the stream) and the caller gets a
    /// `KafkaError` (not retriable) whose cause is the callback's exception. Neither names
    /// the token.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        let callback = self.lock().as_ref().map(|c| c.clone_ref(py));
        let Some(callback) = callback else {
            // Only a stream the collector found unreachable is cleared: nothing calls it after.
            return Err(Error::Closed.into());
        };
        let token = callback
            .bind(py)
            .call1((self.config.as_str(),))
            .map_err(|raised| {
                let kind = raised
                    .get_type(py)
                    .name()
                    .map_or_else(|_| "an exception".to_owned(), |name| name.to_string());
                (format!("oauth_cb raised {kind}"), Some(raised))
            })
            .and_then(|returned| token(&returned).map_err(|problem| (problem, None)));
        match token {
            Ok(token) => {
                self.tokens.provide(Ok(token));
                Ok(())
            }
            Err((reason, cause)) => {
                self.tokens.provide(Err(reason.clone()));
                // The callback failed: a Kafka error, as a refused login; it returned
                // something unusable: the application's configuration.
                let error: PyErr = match cause {
                    Some(_) => Error::Kafka {
                        reason,
                        retriable: false,
                    },
                    None => Error::Config(reason),
                }
                .into();
                error.set_cause(py, cause);
                Err(error)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Py<PyAny>>> {
        self.callback.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Report the callback to the garbage collector, for the one Python object that owns
    /// `this`: an `oauth_cb` that is a bound method of an object holding the stream makes a
    /// cycle, which would otherwise keep the stream (and its group membership) alive until
    /// the process exits. Shared with another object (a `batches()` iterator), it is not
    /// reported: both would report the one reference, and the collector would count it twice.
    pub(crate) fn traverse(
        this: &Arc<TokenCallback>,
        visit: &PyVisit<'_>,
    ) -> Result<(), PyTraverseError> {
        if Arc::strong_count(this) != 1 {
            return Ok(());
        }
        // Only the GIL holder locks it, and the collector holds the GIL: never contended.
        match this.callback.try_lock() {
            Ok(callback) => visit.call(callback.as_ref()),
            Err(_) => Ok(()),
        }
    }

    /// Drop the callback, as [`TokenCallback::traverse`] reported it.
    pub(crate) fn clear(this: &Arc<TokenCallback>) {
        if Arc::strong_count(this) == 1 {
            let callback = this.lock().take();
            drop(callback);
        }
    }
}

/// Run the callback, if there is one and librdkafka asked for a token.
pub(crate) fn serve(py: Python<'_>, callback: Option<&TokenCallback>) -> PyResult<()> {
    callback.map_or(Ok(()), |callback| callback.serve(py))
}

/// `(token, expiry[, principal[, extensions]])`, the expiry in seconds since the epoch, as
/// confluent-kafka's `oauth_cb` returns it.
fn token(returned: &Bound<'_, PyAny>) -> Result<OAuthToken, String> {
    const SHAPE: &str = "oauth_cb must return (token, expiry_seconds_since_epoch[, principal[, \
                         extensions]])";
    let parts = returned
        .cast::<PyTuple>()
        .map_err(|_| format!("{SHAPE}, not a {}", type_name(returned)))?;
    if !(2..=4).contains(&parts.len()) {
        return Err(format!("{SHAPE}, not a tuple of {}", parts.len()));
    }
    let item = |index: usize| parts.get_item(index).map_err(|e| e.to_string());
    let token: String = item(0)?
        .extract()
        .map_err(|_| format!("{SHAPE}: the token must be a str"))?;
    if token.is_empty() {
        return Err(format!("{SHAPE}: the token is empty"));
    }
    let expiry: f64 = item(1)?
        .extract()
        .map_err(|_| format!("{SHAPE}: the expiry must be a number"))?;
    let principal = match parts.len() {
        2 => String::new(),
        _ => item(2)?
            .extract()
            .map_err(|_| format!("{SHAPE}: the principal must be a str"))?,
    };
    if parts.len() == 4 {
        let extensions = item(3)?;
        let empty = extensions.is_none()
            || extensions
                .cast::<PyDict>()
                .is_ok_and(|extensions| extensions.is_empty());
        if !empty {
            // rdkafka hands librdkafka no extensions.
            return Err("oauth_cb returned SASL extensions, which changestream cannot send".into());
        }
    }
    if !expiry.is_finite() {
        return Err(format!("{SHAPE}: the expiry must be a finite number"));
    }
    Ok(OAuthToken {
        token,
        principal,
        expires_ms: (expiry * 1000.0) as i64,
    })
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
}
