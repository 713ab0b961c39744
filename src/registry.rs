//! Confluent Schema Registry client with a process-wide cache of parsed schemas.
//!
//! Only `GET /schemas/ids/{id}` is needed to decode: a schema id in a message names one
//! immutable schema, so a parsed schema is cached for the life of the process and shared by
//! every stream that talks to the same registry, and keeps working while the registry is down.
//! Concurrent first lookups of one id share one request, and share its failure too, so a
//! registry outage costs every waiting stream one deadline, not one deadline each.
//!
//! # Settings
//!
//! [`Registry::new`] takes the keys of confluent-kafka-python's `SchemaRegistryClient`, so a
//! user can reuse that configuration:
//!
//! | key | meaning |
//! |---|---|
//! | `basic.auth.user.info` | `user:password` for HTTP basic authentication |
//! | `basic.auth.credentials.source` | `USER_INFO` (the key above) or `URL` (user information in the URL) |
//! | `bearer.auth.token` | a static bearer token |
//! | `bearer.auth.credentials.source` | `STATIC_TOKEN` only |
//! | `bearer.auth.logical.cluster`, `bearer.auth.identity.pool.id` | Confluent Cloud's `target-sr-cluster` and `Confluent-Identity-Pool-Id` headers |
//! | `ssl.ca.location` | PEM file of the CAs to trust; it **replaces** the system roots, as it does in confluent-kafka-python and librdkafka |
//! | `ssl.certificate.location`, `ssl.key.location` | client certificate (PEM, chain allowed) and its unencrypted PKCS#8 key, for mutual TLS; the key may sit in the certificate file |
//! | `ssl.endpoint.identification.algorithm` | `https` only: hostname verification cannot be turned off |
//! | `url` | accepted when it equals `schema_registry_url`, so a whole client configuration can be passed |
//!
//! TLS verification (chain and hostname) is always on. Error messages name keys, never values:
//! a value may be a secret typed into the wrong key.
//!
//! # Failures
//!
//! Connection errors, timeouts, HTTP 5xx and 429 are retried with exponential backoff and jitter
//! until the deadline (`registry_timeout`); each request is also cut short at the deadline. A 404
//! with the API's "schema not found" error code is [`Error::SchemaNotFound`]; any other 404
//! means the URL is not the registry's API, and says so. Everything else (401/403, other 4xx, a certificate the client
//! does not trust, a TLS handshake the registry refuses) fails at once, not retriable.
//! Credentials never reach a URL, a log line, `Debug` output or an error message: they are moved
//! out of the URL, kept in a type whose `Debug` is redacted, and any error text is scrubbed of
//! them before it leaves this module.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{Certificate, Identity, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::avro::Schema;
use crate::error::{Error, Result};
use crate::runtime::runtime;

/// The longest one HTTP request may take (further bounded by what is left of the deadline).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest time one request is given, even at the very end of the deadline.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long establishing a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause before the first retry; it doubles on each further retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The largest answer we read: a schema is kilobytes; this bounds a misbehaving server.
const MAX_BODY: usize = 8 << 20;
/// How much of a registry's error message we quote.
const MAX_QUOTED: usize = 300;

/// One lookup under way, shared by every caller that asks for the id while it runs.
type Flight = Arc<OnceCell<Result<Arc<Schema>>>>;

/// The cache entry of one schema id of one registry.
#[derive(Default)]
struct Slot {
    schema: OnceLock<Arc<Schema>>,
    flight: Mutex<Option<Flight>>,
}

/// Cache entries by (registry URL, schema id).
type Cache = Mutex<HashMap<(String, u32), Arc<Slot>>>;

/// Parsed schemas of every registry this process talks to.
fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A lock that survives a panic elsewhere: the data behind these locks is always consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A credential: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Auth {
    None,
    Basic {
        user: String,
        password: Secret,
    },
    Bearer {
        token: Secret,
        logical_cluster: Option<String>,
        identity_pool: Option<String>,
    },
}

impl Auth {
    fn secrets(&self) -> Vec<&str> {
        match self {
            Auth::None => vec![],
            Auth::Basic { password, .. } => vec![&password.0],
            Auth::Bearer { token, .. } => vec![&token.0],
        }
    }
}

/// A client for one schema registry.
#[derive(Clone)]
pub struct Registry {
    base: Url,
    auth: Auth,
    http: reqwest::Client,
    deadline: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.base.as_str())
            .field("auth", &self.auth)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    message: Option<String>,
}

/// The user's settings, sorted by meaning; every value is still unchecked.
#[derive(Default)]
struct Settings {
    url: Option<String>,
    user_info: Option<Secret>,
    basic_source: Option<String>,
    token: Option<Secret>,
    bearer_source: Option<String>,
    logical_cluster: Option<String>,
    identity_pool: Option<String>,
    ca: Option<String>,
    certificate: Option<String>,
    key: Option<String>,
    endpoint_identification: Option<String>,
}

impl Settings {
    fn read(settings: &[(String, String)]) -> Result<Settings> {
        let mut read = Settings::default();
        for (key, value) in settings {
            let value = value.clone();
            match key.as_str() {
                "url" => read.url = Some(value),
                "basic.auth.user.info" => read.user_info = Some(Secret(value)),
                "basic.auth.credentials.source" => read.basic_source = Some(value),
                "bearer.auth.token" => read.token = Some(Secret(value)),
                "bearer.auth.credentials.source" => read.bearer_source = Some(value),
                "bearer.auth.logical.cluster" => read.logical_cluster = Some(value),
                "bearer.auth.identity.pool.id" => read.identity_pool = Some(value),
                "ssl.ca.location" => read.ca = Some(value),
                "ssl.certificate.location" => read.certificate = Some(value),
                "ssl.key.location" => read.key = Some(value),
                "ssl.endpoint.identification.algorithm" => {
                    read.endpoint_identification = Some(value)
                }
                "ssl.key.password" => {
                    return Err(config(
                        "schema registry setting \"ssl.key.password\" is not supported: give an \
                         unencrypted PKCS#8 key in ssl.key.location",
                    ))
                }
                "timeout" | "max.retries" | "retries.wait.ms" | "retries.max.wait.ms" => {
                    return Err(config(format!(
                        "schema registry setting {key:?} is not supported: lookups retry with \
                         backoff until registry_timeout"
                    )))
                }
                _ => return Err(config(format!("unknown schema registry setting {key:?}"))),
            }
        }
        Ok(read)
    }

    fn uses_tls(&self) -> bool {
        self.ca.is_some()
            || self.certificate.is_some()
            || self.key.is_some()
            || self.endpoint_identification.is_some()
    }
}

fn config(reason: impl Into<String>) -> Error {
    Error::Config(reason.into())
}

/// Whether `value` names the choice `name` (the Java and Python clients ignore case here).
fn is(value: &str, name: &str) -> bool {
    value.trim().eq_ignore_ascii_case(name)
}

impl Registry {
    /// A client for the registry at `url` (the base URL a Confluent client is given), with
    /// `settings` in confluent-kafka-python's `SchemaRegistryClient` spelling (see the module
    /// documentation). User information in the URL becomes basic authentication. A lookup,
    /// retries included, gives up after `deadline`.
    pub fn new(url: &str, settings: &[(String, String)], deadline: Duration) -> Result<Registry> {
        let settings = Settings::read(settings)?;
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if settings.url.as_deref().is_some_and(|u| !same(u, url)) {
            return Err(config(
                "the registry setting \"url\" differs from schema_registry_url; give the URL once",
            ));
        }
        // The URL may hold a password: no error below quotes it.
        let mut base = Url::parse(url).map_err(|e| {
            config(format!(
                "schema_registry_url is not a valid URL ({e}); expected https://host:port/path"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config(
                "schema_registry_url must start with http:// or https://",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config(
                "schema_registry_url must not have a query or a fragment",
            ));
        }
        let in_url = if base.username().is_empty() && base.password().is_none() {
            None
        } else {
            let user = percent_decode(base.username());
            let password = percent_decode(base.password().unwrap_or(""));
            let _ = base.set_username("");
            let _ = base.set_password(None);
            Some((user, Secret(password)))
        };
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if settings.uses_tls() && base.scheme() != "https" {
            return Err(config(
                "ssl.* registry settings are given but schema_registry_url is not https://",
            ));
        }
        let auth = auth(&settings, in_url)?;
        if auth != Auth::None && base.scheme() == "http" && !is_loopback(&base) {
            log::warn!(
                "schema registry credentials are sent over plain HTTP to {}; use https://",
                base
            );
        }
        let http = client(&settings)?;
        Ok(Registry {
            base,
            auth,
            http,
            deadline,
        })
    }

    /// The schema with this id, from the cache or the registry. Blocks the calling thread,
    /// which must not be a thread of the tokio runtime.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        let slot = lock(cache())
            .entry((self.base.to_string(), id))
            .or_default()
            .clone();
        if let Some(schema) = slot.schema.get() {
            return Ok(schema.clone());
        }
        let flight = lock(&slot.flight)
            .get_or_insert_with(Default::default)
            .clone();
        let result = runtime()
            .block_on(flight.get_or_init(|| self.fetch(id)))
            .clone();
        if let Ok(schema) = &result {
            let _ = slot.schema.set(schema.clone());
        }
        // Callers that joined this flight have its result; a later call starts a new lookup
        // (after a failure) or finds the schema (after a success, which is stored above first).
        let mut current = lock(&slot.flight);
        if current.as_ref().is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            *current = None;
        }
        result
    }

    /// Look the id up, retrying transient failures until the deadline.
    async fn fetch(&self, id: u32) -> Result<Arc<Schema>> {
        let url = self
            .base
            .join(&format!("schemas/ids/{id}"))
            .expect("a relative path joins onto an http(s) base URL");
        let url = &url;
        self.with_retries(
            &format!("schema registry lookup of id {id}"),
            |timeout| async move { parse(id, self.request(url, id, timeout).await?) },
        )
        .await
    }

    /// Run `attempt` (given its request timeout) until it succeeds, fails for good, or the
    /// deadline passes; `what` names it in the warnings logged before each retry.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = self.deadline.saturating_sub(started.elapsed());
            let timeout = left.clamp(MIN_REQUEST_TIMEOUT, REQUEST_TIMEOUT);
            let error = match attempt(timeout).await {
                Ok(value) => return Ok(value),
                Err(error) => self.redact(error),
            };
            let left = self.deadline.saturating_sub(started.elapsed());
            if !error.is_retriable() {
                return Err(error);
            }
            if left.is_zero() {
                return Err(gave_up(error, attempts, started.elapsed()));
            }
            let pause = jitter(backoff(attempts)).min(left);
            log::warn!("{what} failed (attempt {attempts}), retrying in {pause:.1?}: {error}");
            tokio::time::sleep(pause).await;
        }
    }

    /// One HTTP request for the schema with this id.
    async fn request(&self, url: &Url, id: u32, timeout: Duration) -> Result<SchemaResponse> {
        let request = self.http.get(url.clone()).timeout(timeout).header(
            ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        let mut response = self
            .authorize(request)
            .send()
            .await
            .map_err(|e| self.transport_error(e, timeout))?;
        let status = response.status();
        let body = read_body(&mut response)
            .await
            .map_err(|e| self.transport_error(e, timeout))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| Error::Registry {
                reason: format!(
                    "{} answered schema id {id} with something other than a schema ({e})",
                    self.base
                ),
                retriable: false,
                at: None,
            });
        }
        if status == StatusCode::NOT_FOUND && names_missing_schema(&body) {
            return Err(Error::SchemaNotFound { id, at: None });
        }
        Err(self.refusal(
            status,
            &body,
            &format!("schema id {id}"),
            &format!("read schema id {id}"),
        ))
    }

    /// Register an Avro schema under `subject` (or find it registered already); its id.
    /// Retries transient failures until the deadline, like lookups.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| config("schema_registry_url cannot take a path"))?
            .pop_if_empty()
            .extend(["subjects", subject, "versions"]);
        let body = serde_json::json!({ "schema": schema }).to_string();
        self.with_retries(&format!("schema registration of {subject:?}"), |timeout| {
            let request = self
                .http
                .post(url.clone())
                .timeout(timeout)
                .header(
                    ACCEPT,
                    "application/vnd.schemaregistry.v1+json, application/json",
                )
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/vnd.schemaregistry.v1+json",
                )
                .body(body.clone());
            async move {
                let mut response = self
                    .authorize(request)
                    .send()
                    .await
                    .map_err(|e| self.transport_error(e, timeout))?;
                let status = response.status();
                let answer = read_body(&mut response)
                    .await
                    .map_err(|e| self.transport_error(e, timeout))?;
                if status.is_success() {
                    return serde_json::from_slice::<Registered>(&answer)
                        .map(|r| r.id)
                        .map_err(|e| Error::Registry {
                            reason: format!(
                                "{} answered the registration of {subject:?} without an id ({e})",
                                self.base
                            ),
                            retriable: false,
                            at: None,
                        });
                }
                Err(self.refusal(
                    status,
                    &answer,
                    &format!("registering subject {subject:?}"),
                    &format!("register schemas under subject {subject:?}"),
                ))
            }
        })
        .await
    }

    /// The request with this client's credentials.
    fn authorize(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => {}
            Auth::Basic { user, password } => request = request.basic_auth(user, Some(&password.0)),
            Auth::Bearer {
                token,
                logical_cluster,
                identity_pool,
            } => {
                request = request.bearer_auth(&token.0);
                if let Some(cluster) = logical_cluster {
                    request = request.header("target-sr-cluster", cluster);
                }
                if let Some(pool) = identity_pool {
                    request = request.header("Confluent-Identity-Pool-Id", pool);
                }
            }
        }
        request
    }

    /// The error for an answer that is neither a success nor "no such schema id"; `what` names the
    /// request's object and `action` what it was to do.
    fn refusal(&self, status: StatusCode, body: &[u8], what: &str, action: &str) -> Error {
        let (reason, retriable) = match status {
            // A 404 that is not the API's own "not found" comes from a server or path that is
            // not a Confluent-compatible registry API.
            StatusCode::NOT_FOUND => (
                format!(
                    "{} answered HTTP 404 without a schema registry error for {what}: is this \
                     the URL of a Confluent-compatible API (Apicurio's ends in /apis/ccompat/v7)?",
                    self.base
                ),
                false,
            ),
            // No quote of the answer: an authentication failure is the one place a server
            // might echo what it was sent.
            StatusCode::UNAUTHORIZED => (
                format!(
                    "authentication failed: {} answered HTTP {status}; check the registry \
                     credentials (basic.auth.user.info, bearer.auth.token or the URL)",
                    self.base
                ),
                false,
            ),
            StatusCode::FORBIDDEN => (
                format!(
                    "authorization failed: {} answered HTTP {status}; the credentials may not \
                     {action}",
                    self.base
                ),
                false,
            ),
            _ => (
                format!(
                    "{} answered HTTP {status} for {what}{}",
                    self.base,
                    quote_error(body)
                ),
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            ),
        };
        Error::Registry {
            reason,
            retriable,
            at: None,
        }
    }

    /// A failure to exchange a request and an answer. Refused connections, resets and timeouts
    /// may pass; a TLS handshake that fails on certificates will fail the same way again.
    fn transport_error(&self, error: reqwest::Error, timeout: Duration) -> Error {
        let timed_out = error.is_timeout();
        let detail = error_chain(error.without_url());
        let (reason, retriable) = if timed_out {
            (
                format!(
                    "{} did not answer within {timeout:.1?} ({detail})",
                    self.base
                ),
                true,
            )
        } else {
            match tls_failure(&detail) {
                Some(TlsFailure::Untrusted) => (
                    format!(
                        "TLS certificate verification of {} failed ({detail}); set \
                         ssl.ca.location to the PEM file of the CA that signed the registry's \
                         certificate, and connect with a host name the certificate names",
                        self.base
                    ),
                    false,
                ),
                Some(TlsFailure::Refused) => (
                    format!(
                        "{} refused the TLS handshake ({detail}); does it require a client \
                         certificate (ssl.certificate.location, ssl.key.location) or trust a \
                         different one?",
                        self.base
                    ),
                    false,
                ),
                Some(TlsFailure::NotTls) => (
                    format!(
                        "TLS handshake with {} failed ({detail}); is it serving plain HTTP?",
                        self.base
                    ),
                    false,
                ),
                None => (format!("request to {} failed: {detail}", self.base), true),
            }
        };
        Error::Registry {
            reason,
            retriable,
            at: None,
        }
    }

    /// The error with every credential of this client cut out of its text. Nothing we build
    /// quotes one, but the text of a lower layer or a server's answer might.
    fn redact(&self, error: Error) -> Error {
        let secrets = self.auth.secrets();
        let clean = |text: String| secrets.iter().fold(text, |text, s| scrub(text, s));
        match error {
            Error::Registry {
                reason,
                retriable,
                at,
            } => Error::Registry {
                reason: clean(reason),
                retriable,
                at,
            },
            Error::Decode { reason, at } => Error::Decode {
                reason: clean(reason),
                at,
            },
            other => other,
        }
    }
}

/// Secrets at least this long are cut out wherever they appear; shorter ones only where they
/// stand as a word of their own, so that a short password does not mangle the message.
const SCRUB_ANYWHERE: usize = 8;

/// `text` with the occurrences of `secret` replaced by `<redacted>`.
fn scrub(text: String, secret: &str) -> String {
    if secret.is_empty() {
        return text;
    }
    let anywhere = secret.chars().count() >= SCRUB_ANYWHERE;
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(secret) {
        let after = &rest[at + secret.len()..];
        let joins_before = word(rest[..at].chars().next_back()) && word(secret.chars().next());
        let joins_after = word(after.chars().next()) && word(secret.chars().next_back());
        out.push_str(&rest[..at]);
        out.push_str(if anywhere || !(joins_before || joins_after) {
            "<redacted>"
        } else {
            secret
        });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The authentication the settings and the URL ask for.
fn auth(settings: &Settings, in_url: Option<(String, Secret)>) -> Result<Auth> {
    let basic = match settings.basic_source.as_deref() {
        None => match (&settings.user_info, in_url) {
            (Some(_), Some(_)) => {
                return Err(config(
                    "credentials are given both in schema_registry_url and in \
                     basic.auth.user.info; give them once",
                ))
            }
            (Some(info), None) => Some(user_info(info)?),
            (None, in_url) => in_url,
        },
        Some(source) if is(source, "USER_INFO") => {
            if in_url.is_some() {
                return Err(config(
                    "basic.auth.credentials.source is USER_INFO but schema_registry_url holds \
                     credentials; remove them from the URL",
                ));
            }
            let info = settings.user_info.as_ref().ok_or_else(|| {
                config("basic.auth.credentials.source is USER_INFO but basic.auth.user.info is not set")
            })?;
            Some(user_info(info)?)
        }
        Some(source) if is(source, "URL") => {
            if settings.user_info.is_some() {
                return Err(config(
                    "basic.auth.credentials.source is URL but basic.auth.user.info is set too",
                ));
            }
            Some(in_url.ok_or_else(|| {
                config("basic.auth.credentials.source is URL but schema_registry_url holds no credentials")
            })?)
        }
        Some(_) => {
            return Err(config(
                "basic.auth.credentials.source must be USER_INFO or URL (SASL_INHERIT is not supported)",
            ))
        }
    };
    if let Some(source) = &settings.bearer_source {
        if !is(source, "STATIC_TOKEN") {
            return Err(config(
                "bearer.auth.credentials.source must be STATIC_TOKEN (OAuth token sources are not \
                 supported)",
            ));
        }
        if settings.token.is_none() {
            return Err(config(
                "bearer.auth.credentials.source is STATIC_TOKEN but bearer.auth.token is not set",
            ));
        }
    }
    let Some(token) = &settings.token else {
        if settings.logical_cluster.is_some() || settings.identity_pool.is_some() {
            return Err(config(
                "bearer.auth.logical.cluster and bearer.auth.identity.pool.id need bearer.auth.token",
            ));
        }
        return Ok(match basic {
            Some((user, password)) => Auth::Basic { user, password },
            None => Auth::None,
        });
    };
    if basic.is_some() {
        return Err(config(
            "both basic authentication and bearer.auth.token are set; choose one",
        ));
    }
    if token.0.is_empty() || HeaderValue::from_str(&format!("Bearer {}", token.0)).is_err() {
        return Err(config(
            "bearer.auth.token is empty or holds characters an HTTP header cannot carry",
        ));
    }
    for (key, value) in [
        ("bearer.auth.logical.cluster", &settings.logical_cluster),
        ("bearer.auth.identity.pool.id", &settings.identity_pool),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| HeaderValue::from_str(v).is_err())
        {
            return Err(config(format!(
                "{key} holds characters an HTTP header cannot carry"
            )));
        }
    }
    Ok(Auth::Bearer {
        token: token.clone(),
        logical_cluster: settings.logical_cluster.clone(),
        identity_pool: settings.identity_pool.clone(),
    })
}

/// `user:password` from basic.auth.user.info.
fn user_info(info: &Secret) -> Result<(String, Secret)> {
    match info.0.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Ok((user.to_owned(), Secret(password.to_owned())))
        }
        _ => Err(config(
            "basic.auth.user.info must have the form user:password",
        )),
    }
}

/// The HTTP client, with the TLS trust and identity the settings ask for.
fn client(settings: &Settings) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("changestream/", env!("CARGO_PKG_VERSION")));
    match settings.endpoint_identification.as_deref() {
        None => {}
        Some(algorithm) if is(algorithm, "https") => {}
        Some(_) => {
            return Err(config(
                "ssl.endpoint.identification.algorithm must be https: the schema registry \
                 client always verifies the host name",
            ))
        }
    }
    if let Some(path) = &settings.ca {
        let pem = read_file("ssl.ca.location", path)?;
        let certificates = Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| config("ssl.ca.location holds no PEM certificate"))?;
        builder = builder.tls_certs_only(certificates);
    }
    match (&settings.certificate, &settings.key) {
        (None, None) => {}
        (None, Some(_)) => return Err(config("ssl.key.location needs ssl.certificate.location")),
        (Some(certificate), key) => {
            let certificate = read_file("ssl.certificate.location", certificate)?;
            let (key_setting, key) = match key {
                Some(path) => ("ssl.key.location", read_file("ssl.key.location", path)?),
                None => ("ssl.certificate.location", certificate.clone()),
            };
            let key = pkcs8_block(&key).map_err(|why| config(format!("{key_setting} {why}")))?;
            let identity = Identity::from_pkcs8_pem(&certificate, key).map_err(|e| {
                config(format!(
                    "the client certificate (ssl.certificate.location) and its key cannot be \
                     used: {}",
                    error_chain(e)
                ))
            })?;
            builder = builder.identity(identity);
        }
    }
    builder
        .build()
        .map_err(|e| config(format!("cannot set up the HTTP client: {}", error_chain(e))))
}

fn read_file(key: &str, path: &str) -> Result<Vec<u8>> {
    // The error names the key, not the path: the rule is that no value is ever quoted.
    std::fs::read(path).map_err(|e| config(format!("cannot read the file {key} names: {e}")))
}

/// The PKCS#8 private key block in a PEM file, which native-tls wants at the very start.
fn pkcs8_block(pem: &[u8]) -> std::result::Result<&[u8], &'static str> {
    const BEGIN: &[u8] = b"-----BEGIN PRIVATE KEY-----";
    const END: &[u8] = b"-----END PRIVATE KEY-----";
    let find = |needle: &[u8], from: usize| {
        pem.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    if let Some(start) = find(BEGIN, 0) {
        if let Some(end) = find(END, start) {
            return Ok(&pem[start..end + END.len()]);
        }
    }
    if find(b"-----BEGIN ENCRYPTED PRIVATE KEY-----", 0).is_some() {
        return Err("holds an encrypted key; decrypt it (openssl pkcs8 -topk8 -nocrypt)");
    }
    if find(b" PRIVATE KEY-----", 0).is_some() {
        return Err("holds a key that is not PKCS#8; convert it (openssl pkcs8 -topk8 -nocrypt)");
    }
    Err("holds no PEM private key")
}

/// Read the whole answer, refusing one larger than any schema.
async fn read_body(response: &mut reqwest::Response) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a 404's body is the registry API's own answer for an unknown schema id: Confluent's
/// error code 40403 ("schema not found"), which Confluent, Apicurio, Karapace and Redpanda send.
fn names_missing_schema(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|answer| answer.get("error_code")?.as_i64())
        == Some(40403)
}

/// The registry's own explanation of an error answer, shortened, if it gave one.
fn quote_error(body: &[u8]) -> String {
    let Ok(ErrorResponse {
        message: Some(message),
    }) = serde_json::from_slice::<ErrorResponse>(body)
    else {
        return String::new();
    };
    let mut quoted: String = message.chars().take(MAX_QUOTED).collect();
    if quoted.len() < message.len() {
        quoted.push('…');
    }
    format!(": {quoted}")
}

/// The text of an error and of every error under it, without repeating one another.
fn error_chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Why a TLS handshake failed, when it did.
#[derive(Debug, PartialEq, Eq)]
enum TlsFailure {
    /// We do not trust the registry's certificate (chain or host name).
    Untrusted,
    /// The registry refused us (our certificate, or none).
    Refused,
    /// The other end does not speak TLS.
    NotTls,
}

/// Tell TLS failures apart by OpenSSL's reason strings: reqwest does not expose the native-tls
/// error type, and these strings have been stable across OpenSSL releases for decades.
fn tls_failure(detail: &str) -> Option<TlsFailure> {
    let detail = detail.to_ascii_lowercase();
    if detail.contains("certificate verify failed") {
        Some(TlsFailure::Untrusted)
    } else if detail.contains("alert")
        && [
            "certificate",
            "unknown ca",
            "handshake failure",
            "access denied",
        ]
        .iter()
        .any(|a| detail.contains(a))
    {
        Some(TlsFailure::Refused)
    } else if detail.contains("wrong version number") || detail.contains("packet length too long") {
        Some(TlsFailure::NotTls)
    } else {
        None
    }
}

/// The pause before retry number `attempts`: doubling from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Between half and all of `pause`, at random, so streams that failed together do not retry
/// together.
fn jitter(pause: Duration) -> Duration {
    // Each RandomState is seeded afresh: enough randomness for spreading retries.
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    pause.mul_f64(0.5 + 0.5 * fraction)
}

fn gave_up(error: Error, attempts: u32, elapsed: Duration) -> Error {
    match error {
        Error::Registry {
            reason,
            retriable,
            at,
        } => Error::Registry {
            reason: format!(
                "gave up after {attempts} attempts in {:.1} s (registry_timeout): {reason}",
                elapsed.as_secs_f64()
            ),
            retriable,
            at,
        },
        other => other,
    }
}

fn parse(id: u32, response: SchemaResponse) -> Result<Arc<Schema>> {
    if let Some(kind) = response
        .schema_type
        .filter(|k| !k.eq_ignore_ascii_case("AVRO"))
    {
        return Err(Error::decode(format!(
            "schema id {id} is a {kind} schema; changestream decodes only Avro"
        )));
    }
    if !response.references.is_empty() {
        return Err(Error::decode(format!(
            "schema id {id} uses schema references, which changestream does not resolve yet"
        )));
    }
    Schema::parse(&response.schema).map(Arc::new)
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Undo the percent-encoding of URL user information.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::thread::JoinHandle;

    use super::*;

    const PASSWORD: &str = "s3cr3t-p4ss-XYZ";
    const TOKEN: &str = "t0k3n-ABC-s3cr3t";
    const STRING_SCHEMA: &str = r#"{"schema": "\"string\""}"#;

    /// What the test server saw of one request.
    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        /// Header names in lower case.
        headers: Vec<(String, String)>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    type Respond = dyn Fn(usize, &Seen) -> (u16, String) + Send + Sync;

    /// A one-purpose HTTP/1.1 server on 127.0.0.1: answers each request with `respond(n, seen)`
    /// (n counts from 0) and records it. Dropping it closes the port.
    struct Server {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(respond: impl Fn(usize, &Seen) -> (u16, String) + Send + Sync + 'static) -> Self {
            // A path of its own per server: the schema cache is keyed by URL, and a port may be
            // reused by a later test of this process.
            static SERVERS: AtomicUsize = AtomicUsize::new(0);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!(
                "http://{}/server-{}/",
                listener.local_addr().unwrap(),
                SERVERS.fetch_add(1, Ordering::Relaxed)
            );
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let respond: Arc<Respond> = Arc::new(respond);
            let thread = {
                let (seen, stop) = (seen.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let (seen, respond) = (seen.clone(), respond.clone());
                                std::thread::spawn(move || answer(stream, &seen, &*respond));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            };
            Server {
                url,
                seen,
                stop,
                thread: Some(thread),
            }
        }

        fn seen(&self) -> Vec<Seen> {
            lock(&self.seen).clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn answer(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, respond: &Respond) {
        stream.set_nonblocking(false).unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request).into_owned();
        let mut lines = text.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let request = Seen { path, headers };
        let n = {
            let mut seen = lock(seen);
            seen.push(request.clone());
            seen.len() - 1
        };
        let (status, body) = respond(n, &request);
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn open(url: &str, pairs: &[(&str, &str)], deadline: Duration) -> Registry {
        Registry::new(url, &settings(pairs), deadline).unwrap()
    }

    fn config_error(url: &str, pairs: &[(&str, &str)]) -> String {
        match Registry::new(url, &settings(pairs), Duration::from_secs(1)) {
            Err(Error::Config(reason)) => reason,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn concurrent_first_lookups_make_one_request() {
        let server = Server::start(|_, _| {
            // Slow enough that every thread asks while the first request is under way.
            std::thread::sleep(Duration::from_millis(300));
            (200, STRING_SCHEMA.into())
        });
        let registry = open(&server.url, &[], Duration::from_secs(10));
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (registry, barrier) = (registry.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    registry.schema(7)
                })
            })
            .collect();
        let schemas: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
        assert_eq!(server.seen()[0].path, server_path(&server, "schemas/ids/7"));
        assert!(schemas.iter().all(|s| Arc::ptr_eq(s, &schemas[0])));
    }

    #[test]
    fn concurrent_lookups_share_a_failure() {
        let server = Server::start(|_, _| (401, "{}".into()));
        let registry = open(&server.url, &[], Duration::from_secs(10));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (registry, barrier) = (registry.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    registry.schema(8)
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.join().unwrap().is_err());
        }
        // Threads that asked while the one request ran all got its answer; a thread that came
        // after it may start one more lookup, never one per thread.
        assert!(server.seen().len() <= 2, "{:?}", server.seen());
        // A failure is not cached: the next lookup asks again.
        let before = server.seen().len();
        assert!(registry.schema(8).is_err());
        assert_eq!(server.seen().len(), before + 1);
    }

    fn server_path(server: &Server, rest: &str) -> String {
        let base = Url::parse(&server.url).unwrap();
        format!("{}{rest}", base.path())
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let server = Server::start(|n, _| match n {
            0 => (
                503,
                r#"{"error_code": 50301, "message": "starting"}"#.into(),
            ),
            1 => (429, "{}".into()),
            _ => (200, STRING_SCHEMA.into()),
        });
        let registry = open(&server.url, &[], Duration::from_secs(10));
        registry.schema(11).unwrap();
        assert_eq!(server.seen().len(), 3);
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let server = Server::start(|_, _| (503, r#"{"message": "overloaded"}"#.into()));
        let deadline = Duration::from_millis(800);
        let registry = open(&server.url, &[], deadline);
        let started = Instant::now();
        let error = registry.schema(12).unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(
                &error,
                Error::Registry {
                    retriable: true,
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("503") && text.contains("overloaded") && text.contains("gave up"),
            "{text}"
        );
        assert!(elapsed >= deadline, "gave up early, after {elapsed:?}");
        assert!(
            elapsed < deadline + Duration::from_millis(700),
            "{elapsed:?}"
        );
        // 100 ms doubling, halved at most by jitter: at least 4 attempts fit in 800 ms.
        assert!(server.seen().len() >= 4, "{:?}", server.seen().len());
    }

    #[test]
    fn unreachable_registry_gives_up_at_the_deadline() {
        // Bind then drop: nothing listens on the port, so every attempt is refused at once.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/unreachable/");
        let registry = open(&url, &[], Duration::from_millis(500));
        let started = Instant::now();
        let error = registry.schema(1).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Registry {
                    retriable: true,
                    ..
                }
            ),
            "{error}"
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn unknown_id_is_schema_not_found() {
        let server = Server::start(|_, _| {
            (
                404,
                r#"{"error_code": 40403, "message": "Schema 13 not found"}"#.into(),
            )
        });
        let registry = open(&server.url, &[], Duration::from_secs(10));
        let error = registry.schema(13).unwrap_err();
        assert!(
            matches!(error, Error::SchemaNotFound { id: 13, .. }),
            "{error:?}"
        );
        assert_eq!(server.seen().len(), 1, "a 404 is not retried");
    }

    #[test]
    fn a_404_that_is_not_the_api_s_reports_a_wrong_url() {
        let server = Server::start(|_, _| (404, "<html>Not Found</html>".into()));
        let registry = open(&server.url, &[], Duration::from_secs(10));
        let error = registry.schema(21).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Registry {
                    retriable: false,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("Confluent-compatible API"),
            "{error}"
        );
        assert_eq!(server.seen().len(), 1, "a wrong URL is not retried");
    }

    #[test]
    fn rejected_credentials_fail_at_once_without_the_secret() {
        let server = Server::start(|_, seen| {
            // A server that echoes what it was sent must not get the secret into our errors.
            let echo = seen.header("authorization").unwrap_or_default().to_owned();
            (
                401,
                format!(r#"{{"message": "bad credentials {echo} {PASSWORD}"}}"#),
            )
        });
        let user_info = format!("alice:{PASSWORD}");
        let registry = open(
            &server.url,
            &[("basic.auth.user.info", &user_info)],
            Duration::from_secs(10),
        );
        let started = Instant::now();
        let error = registry.schema(14).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(
                &error,
                Error::Registry {
                    retriable: false,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(server.seen().len(), 1, "a 401 is not retried");
        let text = format!("{error} {error:?} {registry:?}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");

        let forbidden = Server::start(|_, _| (403, "{}".into()));
        let registry = open(
            &forbidden.url,
            &[("bearer.auth.token", TOKEN)],
            Duration::from_secs(10),
        );
        let error = registry.schema(14).unwrap_err();
        let text = format!("{error} {error:?} {registry:?}");
        assert!(!error.is_retriable());
        assert!(text.contains("authorization failed"), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }

    #[test]
    fn error_text_is_scrubbed_of_secrets() {
        let server = Server::start(|_, _| (400, format!(r#"{{"message": "odd {TOKEN}"}}"#)));
        let registry = open(
            &server.url,
            &[("bearer.auth.token", TOKEN)],
            Duration::from_secs(10),
        );
        let text = registry.schema(15).unwrap_err().to_string();
        assert!(text.contains("odd <redacted>"), "{text}");
    }

    #[test]
    fn basic_credentials_are_sent() {
        let server = Server::start(|_, _| (200, STRING_SCHEMA.into()));
        let user_info = format!("alice:{PASSWORD}");
        for pairs in [
            vec![("basic.auth.user.info", user_info.as_str())],
            vec![
                ("basic.auth.credentials.source", "USER_INFO"),
                ("basic.auth.user.info", user_info.as_str()),
            ],
        ] {
            let registry = open(&server.url, &pairs, Duration::from_secs(10));
            assert!(!format!("{registry:?}").contains(PASSWORD));
            registry.schema(16).unwrap();
        }
        let seen = server.seen();
        assert_eq!(
            seen.len(),
            1,
            "the second registry finds the schema in the cache"
        );
        // base64("alice:s3cr3t-p4ss-XYZ")
        assert_eq!(
            seen[0].header("authorization"),
            Some("Basic YWxpY2U6czNjcjN0LXA0c3MtWFla")
        );
    }

    #[test]
    fn url_credentials_are_sent_as_basic_auth() {
        let server = Server::start(|_, _| (200, STRING_SCHEMA.into()));
        let url = server
            .url
            .replace("http://", "http://alice:s3cr3t-p4ss-XYZ@");
        let registry = open(
            &url,
            &[("basic.auth.credentials.source", "URL")],
            Duration::from_secs(10),
        );
        registry.schema(17).unwrap();
        assert_eq!(
            server.seen()[0].header("authorization"),
            Some("Basic YWxpY2U6czNjcjN0LXA0c3MtWFla")
        );
        assert!(!format!("{registry:?}").contains(PASSWORD));
    }

    #[test]
    fn bearer_token_is_sent() {
        let server = Server::start(|_, _| (200, STRING_SCHEMA.into()));
        let registry = open(
            &server.url,
            &[
                ("bearer.auth.credentials.source", "STATIC_TOKEN"),
                ("bearer.auth.token", TOKEN),
                ("bearer.auth.logical.cluster", "lsrc-123"),
                ("bearer.auth.identity.pool.id", "pool-9"),
            ],
            Duration::from_secs(10),
        );
        assert!(!format!("{registry:?}").contains(TOKEN));
        registry.schema(18).unwrap();
        let seen = &server.seen()[0];
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(seen.header("target-sr-cluster"), Some("lsrc-123"));
        assert_eq!(seen.header("confluent-identity-pool-id"), Some("pool-9"));
    }

    #[test]
    fn no_credentials_no_authorization_header() {
        let server = Server::start(|_, _| (200, STRING_SCHEMA.into()));
        open(&server.url, &[], Duration::from_secs(10))
            .schema(19)
            .unwrap();
        assert_eq!(server.seen()[0].header("authorization"), None);
    }

    #[test]
    fn cached_schemas_outlive_the_registry() {
        let server = Server::start(|_, _| (200, STRING_SCHEMA.into()));
        let url = server.url.clone();
        let first = open(&url, &[], Duration::from_secs(10)).schema(20).unwrap();
        drop(server);
        // Another client of the same registry (another stream) shares the process-wide cache.
        let started = Instant::now();
        let again = open(&url, &[], Duration::from_secs(10)).schema(20).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(started.elapsed() < Duration::from_millis(100));
        // An id never looked up needs the registry, which is gone.
        let error = open(&url, &[], Duration::from_millis(200))
            .schema(21)
            .unwrap_err();
        assert!(error.is_retriable(), "{error:?}");
    }

    #[test]
    fn only_avro_schemas_are_accepted() {
        let server = Server::start(|_, _| {
            (
                200,
                r#"{"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}"#.into(),
            )
        });
        let error = open(&server.url, &[], Duration::from_secs(10))
            .schema(22)
            .unwrap_err();
        assert!(
            matches!(&error, Error::Decode { reason, .. } if reason.contains("PROTOBUF schema")),
            "{error:?}"
        );
    }

    #[test]
    fn credentials_leave_the_url() {
        let registry = Registry::new(
            "https://api-key:s3cr%40t@registry.example/apis/ccompat/v7",
            &[],
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            registry.base.as_str(),
            "https://registry.example/apis/ccompat/v7/"
        );
        assert_eq!(
            registry.auth,
            Auth::Basic {
                user: "api-key".to_owned(),
                password: Secret("s3cr@t".to_owned())
            }
        );
        assert!(!format!("{registry:?}").contains("s3cr"));
    }

    #[test]
    fn bad_settings_are_config_errors_that_quote_no_value() {
        let http = "http://127.0.0.1:1/";
        let https = "https://127.0.0.1:1/";
        let user_info = format!("alice:{PASSWORD}");
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                http,
                vec![("schema.registry.url", PASSWORD)],
                "unknown schema registry setting \"schema.registry.url\"",
            ),
            (
                http,
                vec![("basic.auth.user.info", PASSWORD)],
                "user:password",
            ),
            (
                http,
                vec![
                    ("basic.auth.user.info", &user_info),
                    ("bearer.auth.token", TOKEN),
                ],
                "choose one",
            ),
            (
                http,
                vec![("basic.auth.credentials.source", PASSWORD)],
                "USER_INFO or URL",
            ),
            (
                http,
                vec![("basic.auth.credentials.source", "URL")],
                "holds no credentials",
            ),
            (
                http,
                vec![("bearer.auth.credentials.source", "OAUTHBEARER")],
                "STATIC_TOKEN",
            ),
            (
                http,
                vec![("bearer.auth.credentials.source", "STATIC_TOKEN")],
                "not set",
            ),
            (http, vec![("bearer.auth.token", "a\nb")], "HTTP header"),
            (http, vec![("url", PASSWORD)], "differs"),
            (http, vec![("max.retries", "3")], "registry_timeout"),
            (http, vec![("ssl.key.password", PASSWORD)], "unencrypted"),
            (
                http,
                vec![("ssl.ca.location", "/etc/hosts")],
                "not https://",
            ),
            (
                https,
                vec![("ssl.ca.location", "/nonexistent/s3cr3t-p4ss-XYZ.pem")],
                "ssl.ca.location",
            ),
            (
                https,
                vec![("ssl.ca.location", "/etc/hostname")],
                "no PEM certificate",
            ),
            (
                https,
                vec![("ssl.key.location", "/etc/hostname")],
                "needs ssl.certificate.location",
            ),
            (
                https,
                vec![("ssl.endpoint.identification.algorithm", "none")],
                "always verifies",
            ),
        ];
        for (url, pairs, expected) in cases {
            let reason = config_error(url, &pairs);
            assert!(reason.contains(expected), "{pairs:?}: {reason}");
            assert!(
                !reason.contains(PASSWORD) && !reason.contains(TOKEN),
                "{reason}"
            );
        }
        let reason = config_error(
            "https://alice:s3cr3t-p4ss-XYZ@127.0.0.1:1/",
            &[("basic.auth.user.info", &user_info)],
        );
        assert!(
            reason.contains("once") && !reason.contains(PASSWORD),
            "{reason}"
        );
        assert!(config_error("registry:8081", &[]).contains("http://"));
        assert!(config_error("not a url", &[]).contains("valid URL"));
        Registry::new(
            https,
            &settings(&[
                ("url", https),
                ("ssl.endpoint.identification.algorithm", "https"),
            ]),
            Duration::from_secs(1),
        )
        .unwrap();
    }

    #[test]
    fn private_keys_must_be_pkcs8() {
        let pkcs8 = b"junk\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\nmore";
        assert_eq!(
            pkcs8_block(pkcs8).unwrap(),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        );
        assert!(pkcs8_block(b"-----BEGIN RSA PRIVATE KEY-----\n")
            .unwrap_err()
            .contains("not PKCS#8"));
        assert!(pkcs8_block(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
            .unwrap_err()
            .contains("encrypted"));
        assert!(pkcs8_block(b"").is_err());
    }

    #[test]
    fn tls_failures_are_told_apart() {
        let verify = "error sending request: client error (Connect): error:0A000086:SSL \
                      routines:tls_post_process_server_certificate:certificate verify failed:\
                      ssl/statem/statem_clnt.c:2100:: self-signed certificate in certificate chain";
        assert_eq!(tls_failure(verify), Some(TlsFailure::Untrusted));
        let refused =
            "error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required";
        assert_eq!(tls_failure(refused), Some(TlsFailure::Refused));
        let plain = "error:0A00010B:SSL routines:ssl3_get_record:wrong version number";
        assert_eq!(tls_failure(plain), Some(TlsFailure::NotTls));
        let refused_tcp = "error sending request: client error (Connect): tcp connect error: \
                           Connection refused (os error 111)";
        assert_eq!(tls_failure(refused_tcp), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_cap() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
        let pauses: Vec<_> = (0..50).map(|_| jitter(Duration::from_secs(1))).collect();
        assert!(pauses
            .iter()
            .all(|p| *p >= Duration::from_millis(500) && *p <= Duration::from_secs(1)));
        assert!(
            pauses.iter().any(|p| *p != pauses[0]),
            "no jitter: {pauses:?}"
        );
    }

    #[test]
    fn scrubbing_cuts_secrets_not_words() {
        let text = "https://host/apis: bad user:p4ss xs3cr3t-p4ss-XYZy".to_owned();
        assert_eq!(
            scrub(scrub(text, PASSWORD), "p4ss"),
            "https://host/apis: bad user:<redacted> x<redacted>y"
        );
        assert_eq!(scrub("http://h p".into(), "p"), "http://h <redacted>");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%3Ac%2"), "a@b:c%2");
        assert_eq!(percent_decode("%zz%é"), "%zz%é");
    }
}
