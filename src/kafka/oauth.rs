//! SASL/OAUTHBEARER tokens from the application, handed to librdkafka without a Rust thread
//! ever calling into the application.
//!
//! librdkafka asks for a token when the client starts and again at 80 % of each token's
//! lifetime, through an event served by whichever thread polls the consumer: the fetch thread,
//! or the thread opening a stream. That thread only *asks*: it raises [`OAuthTokens::requested`]
//! and waits (briefly) for a token. The application's callback runs on the application's own
//! thread, between the slices of its waits for changes, which sees the request and hands the
//! token over with [`OAuthTokens::provide`]. The first token is fetched before the client
//! exists, so a stream never waits for its first connection. A request nobody answers in
//! [`TOKEN_WAIT`] (the application is busy elsewhere) is retried by librdkafka ten seconds
//! later; by then the token is usually waiting, and the previous one is still valid meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the polling thread waits for the application to answer a token request.
const TOKEN_WAIT: Duration = Duration::from_secs(5);

/// What a token request that nobody answered in time tells librdkafka. librdkafka reports
/// it as an authentication error, which is not fatal: the previous token is still valid and
/// the request is repeated.
pub(super) const TOKEN_PENDING: &str =
    "oauth_cb has not run yet (the application has not used the stream); asking again";

/// What a token request of a stream without `oauth_cb` tells librdkafka: only librdkafka's
/// own test token (`enable.sasl.oauthbearer.unsecure.jwt`) gets there, and librdkafka sets
/// that one itself right after.
pub(super) const NO_TOKEN_CALLBACK: &str = "no oauth_cb: librdkafka sets its own token";

/// A token from the application: what librdkafka sends the broker. `Debug` leaves the token
/// out.
#[derive(Clone)]
pub struct OAuthToken {
    /// The token itself (a JWT, or whatever the broker's validator accepts).
    pub token: String,
    /// The principal the token names.
    pub principal: String,
    /// When the token expires, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

impl std::fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthToken")
            .field("principal", &self.principal)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Where the application's tokens meet librdkafka's requests for them.
#[derive(Debug, Default)]
pub struct OAuthTokens {
    state: Mutex<TokenState>,
    handed_over: Condvar,
    /// librdkafka is waiting for a token: the application's next call runs its callback.
    requested: AtomicBool,
}

#[derive(Debug, Default)]
struct TokenState {
    /// A token (or why the callback failed) not yet taken by librdkafka.
    fresh: Option<Result<OAuthToken, String>>,
    /// The stream is closing: requests are answered at once.
    closed: bool,
}

impl OAuthTokens {
    fn state(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether librdkafka waits for a token. One atomic load: checked before every change.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Hand librdkafka a token, or the reason there is none (it fails the stream). The reason
    /// must never contain the token.
    pub fn provide(&self, token: Result<OAuthToken, String>) {
        self.state().fresh = Some(token);
        self.requested.store(false, Ordering::Release);
        self.handed_over.notify_all();
    }

    /// The stream is closing: nobody will answer requests any more.
    pub(super) fn close(&self) {
        self.state().closed = true;
        self.handed_over.notify_all();
    }

    /// The token for librdkafka, waiting at most [`TOKEN_WAIT`] for the application.
    pub(super) fn take(&self) -> Result<OAuthToken, String> {
        let deadline = Instant::now() + TOKEN_WAIT;
        let mut state = self.state();
        loop {
            if let Some(fresh) = state.fresh.take() {
                return fresh;
            }
            if state.closed {
                return Err("the stream is closing".into());
            }
            self.requested.store(true, Ordering::Release);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TOKEN_PENDING.into());
            }
            state = self
                .handed_over
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn token(expires_ms: i64) -> OAuthToken {
        OAuthToken {
            token: "secret-token".into(),
            principal: "alice".into(),
            expires_ms,
        }
    }

    #[test]
    fn a_provided_token_is_taken_once() {
        let tokens = OAuthTokens::default();
        tokens.provide(Ok(token(1)));
        assert!(!tokens.requested());
        assert_eq!(tokens.take().unwrap().expires_ms, 1);
        // The next take asks the application and waits for its answer.
        let tokens = Arc::new(tokens);
        let asker = {
            let tokens = tokens.clone();
            std::thread::spawn(move || tokens.take())
        };
        while !tokens.requested() {
            std::thread::sleep(Duration::from_millis(1));
        }
        tokens.provide(Err("oauth_cb raised ValueError".into()));
        assert_eq!(
            asker.join().unwrap().unwrap_err(),
            "oauth_cb raised ValueError"
        );
        assert!(!tokens.requested());
    }

    #[test]
    fn closing_answers_a_waiting_request() {
        let tokens = Arc::new(OAuthTokens::default());
        let asker = {
            let tokens = tokens.clone();
            std::thread::spawn(move || tokens.take())
        };
        while !tokens.requested() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        tokens.close();
        assert!(asker.join().unwrap().is_err());
        assert!(started.elapsed() < TOKEN_WAIT);
    }

    #[test]
    fn debug_leaves_the_token_out() {
        let shown = format!("{:?}", token(7));
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("alice"));
    }
}
