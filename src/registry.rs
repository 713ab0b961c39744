//! Confluent Schema Registry client with a process-wide cache of parsed schemas.
//!
//! Only `GET /schemas/ids/{id}` is needed to decode: a schema id in a message names one
//! immutable schema, so a parsed schema is cached for the life of the process and shared by
//! every stream that talks to the same registry. Concurrent first lookups of one id make one
//! request. Transient failures (connection errors, 5xx, 429) are retried with backoff until
//! the deadline; credentials given in the URL are moved to a basic-auth header and never
//! appear in errors or logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::avro::Schema;
use crate::error::{Error, Result};
use crate::runtime::runtime;

type Slot = Arc<OnceCell<Arc<Schema>>>;

/// Parsed schemas of every registry this process talks to, by (registry URL, schema id).
fn cache() -> &'static Mutex<HashMap<(String, u32), Slot>> {
    static CACHE: OnceLock<Mutex<HashMap<(String, u32), Slot>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A client for one schema registry.
#[derive(Clone)]
pub struct Registry {
    base: Url,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
    deadline: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.base.as_str())
            .field("auth", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

impl Registry {
    /// A client for the registry at `url` (the base URL a Confluent client is given), with
    /// `settings` in confluent-kafka-python's `SchemaRegistryClient` spelling. User information
    /// in the URL becomes basic authentication. Lookups give up after `deadline`.
    pub fn new(url: &str, settings: &[(String, String)], deadline: Duration) -> Result<Registry> {
        if let Some((key, _)) = settings.first() {
            return Err(Error::Config(format!(
                "unknown schema registry setting {key:?}"
            )));
        }
        let mut base = Url::parse(url)
            .map_err(|e| Error::Config(format!("schema_registry_url is not a valid URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config(
                "schema_registry_url must start with http:// or https://".into(),
            ));
        }
        let credentials = if base.username().is_empty() {
            None
        } else {
            let user = percent_decode(base.username());
            let password = percent_decode(base.password().unwrap_or(""));
            let _ = base.set_username("");
            let _ = base.set_password(None);
            Some((user, password))
        };
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Registry {
            base,
            credentials,
            http,
            deadline,
        })
    }

    /// The schema with this id, from the cache or the registry. Blocks the calling thread,
    /// which must not be a thread of the tokio runtime.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>> {
        let slot = {
            let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
            cache
                .entry((self.base.to_string(), id))
                .or_default()
                .clone()
        };
        if let Some(schema) = slot.get() {
            return Ok(schema.clone());
        }
        runtime()
            .block_on(slot.get_or_try_init(|| self.fetch(id)))
            .cloned()
    }

    async fn fetch(&self, id: u32) -> Result<Arc<Schema>> {
        let url = self
            .base
            .join(&format!("schemas/ids/{id}"))
            .expect("a path joins onto a base URL");
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = match self.request(&url, id).await {
                Ok(response) => return Self::parse(id, response),
                Err(error) => error,
            };
            if !error.is_retriable() || started.elapsed() + backoff > self.deadline {
                return Err(error);
            }
            log::warn!(
                "schema registry lookup of id {id} failed, retrying in {backoff:?}: {error}"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn request(&self, url: &Url, id: u32) -> Result<SchemaResponse> {
        let mut request = self.http.get(url.clone()).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let failed = |e: reqwest::Error| Error::Registry {
            reason: format!("request to {} failed: {}", self.base, e.without_url()),
            retriable: true,
            at: None,
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| Error::Registry {
                reason: format!("unexpected answer from {}: {}", self.base, e.without_url()),
                retriable: false,
                at: None,
            });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Error::SchemaNotFound { id, at: None });
        }
        Err(Error::Registry {
            reason: format!("{} answered HTTP {status}", self.base),
            retriable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            at: None,
        })
    }

    fn parse(id: u32, response: SchemaResponse) -> Result<Arc<Schema>> {
        if let Some(kind) = response.schema_type.filter(|k| k != "AVRO") {
            return Err(Error::decode(format!(
                "schema id {id} is a {kind} schema; only Avro is supported"
            )));
        }
        Schema::parse(&response.schema).map(Arc::new)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
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
    use super::*;

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
            registry.credentials,
            Some(("api-key".to_owned(), "s3cr@t".to_owned()))
        );
        assert!(!format!("{registry:?}").contains("s3cr"));
    }

    #[test]
    fn bad_urls_are_config_errors() {
        assert!(matches!(
            Registry::new("registry:8081", &[], Duration::from_secs(1)),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn unreachable_registry_gives_up_at_the_deadline() {
        // Port 9 on loopback: nothing listens, so every attempt is refused at once.
        let registry =
            Registry::new("http://127.0.0.1:9", &[], Duration::from_millis(300)).unwrap();
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
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
