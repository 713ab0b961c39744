//! TLS on capture's PostgreSQL connections, as libpq's `sslmode` and `sslrootcert` ask for it.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` but not `verify-ca`,
//! `verify-full` nor `sslrootcert`, so both are taken out of the DSN here and turned into a
//! native-tls connector (OpenSSL on Linux) that the catalog connections (through
//! postgres-native-tls) and the replication connection share. As in libpq: `require` encrypts
//! without checking the certificate, `verify-ca` checks it against the roots, `verify-full`
//! also checks that it names the host; `sslrootcert` replaces the system's roots.

use native_tls::{Certificate, TlsConnector};
use tokio_postgres::config::SslMode;

use crate::error::{Error, Result};

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate checked against the roots.
    VerifyCa,
    /// TLS, certificate checked and naming the host.
    VerifyFull,
}

impl Mode {
    /// Whether a server that refuses TLS must be refused too.
    pub fn required(self) -> bool {
        !matches!(self, Mode::Disable | Mode::Prefer)
    }

    /// The nearest mode tokio-postgres knows (it leaves the checks to the connector).
    pub fn for_tokio_postgres(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS settings of a DSN and the connector they make.
#[derive(Clone)]
pub struct Tls {
    /// The mode asked for.
    pub mode: Mode,
    /// The connector (unused under `disable`).
    pub connector: TlsConnector,
}

/// The DSN without `sslmode` and `sslrootcert`, and the TLS they ask for.
pub fn split_dsn(dsn: &str) -> Result<(String, Tls)> {
    let mut mode = None;
    let mut root = None;
    let rest = if let Some((head, query)) = dsn.split_once("://").and_then(|_| dsn.split_once('?'))
    {
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = Some(percent_decoded(value)),
                Some(("sslrootcert", value)) => root = Some(percent_decoded(value)),
                _ => kept.push(pair),
            }
        }
        if kept.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", kept.join("&"))
        }
    } else if dsn.contains("://") {
        dsn.to_owned()
    } else {
        let mut kept = Vec::new();
        for token in dsn.split_whitespace() {
            match token.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.trim_matches('\'').to_owned()),
                Some(("sslrootcert", value)) => root = Some(value.trim_matches('\'').to_owned()),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    let mode = match mode.as_deref() {
        None | Some("prefer") => Mode::Prefer,
        Some("disable") => Mode::Disable,
        Some("require") => Mode::Require,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some(other) => {
            return Err(Error::Config(format!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    let mut builder = TlsConnector::builder();
    match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        Mode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        Mode::VerifyFull => {}
    }
    if let Some(path) = root {
        let pem = std::fs::read(&path)
            .map_err(|e| Error::Config(format!("sslrootcert {path:?} cannot be read: {e}")))?;
        let certificate = Certificate::from_pem(&pem).map_err(|e| {
            Error::Config(format!(
                "sslrootcert {path:?} is not a PEM certificate: {e}"
            ))
        })?;
        builder
            .add_root_certificate(certificate)
            .disable_built_in_roots(true);
    }
    let connector = builder
        .build()
        .map_err(|e| Error::Config(format!("cannot set up TLS for PostgreSQL: {e}")))?;
    Ok((rest, Tls { mode, connector }))
}

/// `%2F` and the like decoded (a URL's query value); other text kept.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_root_leave_the_dsn() {
        let (rest, tls) =
            split_dsn("postgresql://u@h:5432/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(rest, "postgresql://u@h:5432/db?application_name=x");
        assert_eq!(tls.mode, Mode::VerifyFull);
        let (rest, tls) = split_dsn("postgresql://u@h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://u@h/db");
        assert_eq!(tls.mode, Mode::Require);
        let (rest, tls) = split_dsn("host=h user=u sslmode=disable dbname=d").unwrap();
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(tls.mode, Mode::Disable);
        assert_eq!(
            split_dsn("postgresql://u@h/db").unwrap().1.mode,
            Mode::Prefer
        );
        assert!(split_dsn("postgresql://u@h/db?sslmode=sometimes").is_err());
        assert!(split_dsn("postgresql://u@h/db?sslrootcert=%2Fno%2Fsuch.pem").is_err());
        assert_eq!(percent_decoded("%2Ftmp%2Fca.pem"), "/tmp/ca.pem");
    }
}
