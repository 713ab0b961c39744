//! The replication connection: PostgreSQL's streaming replication protocol, just enough of it.
//!
//! One connection opened with `replication=database` creates the slot (exporting its
//! snapshot, which stays valid while this connection stays idle), then streams the slot's
//! pgoutput messages and sends standby status updates that confirm what Kafka holds. Messages
//! are framed here by hand (a tag byte and a length); SCRAM and MD5 come from
//! `postgres-protocol`; TLS (SSLRequest, then native-tls) as the DSN's `sslmode` asks
//! ([`super::tls`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::capture::postgres_error;
use crate::capture::tls::Tls;
use crate::error::{Error, Result};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A log sequence number, PostgreSQL's position in its write-ahead log.
pub type Lsn = u64;

/// An LSN in PostgreSQL's `X/Y` notation.
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// An LSN from PostgreSQL's `X/Y` notation.
pub fn parse_lsn(text: &str) -> Result<Lsn> {
    let bad = || {
        postgres_error(
            format!("PostgreSQL answered {text:?} where an LSN belongs"),
            false,
        )
    };
    let (high, low) = text.split_once('/').ok_or_else(bad)?;
    let high = u64::from_str_radix(high, 16).map_err(|_| bad())?;
    let low = u64::from_str_radix(low, 16).map_err(|_| bad())?;
    Ok((high << 32) | low)
}

/// Where and as whom to connect (from the user's DSN, parsed by tokio-postgres).
#[derive(Clone)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Password, if any (never logged nor quoted).
    pub password: Option<Vec<u8>>,
    /// Database name.
    pub dbname: String,
}

/// One message from the server: its tag and body.
struct Message {
    tag: u8,
    body: BytesMut,
}

/// What the replication stream delivered.
pub enum Replicated {
    /// pgoutput data starting at WAL position `start`.
    Data {
        /// The WAL position of the message.
        start: Lsn,
        /// The pgoutput message.
        data: BytesMut,
    },
    /// The server's keepalive: everything before `wal_end` was sent.
    Keepalive {
        /// The server's sent position.
        wal_end: Lsn,
        /// Whether the server wants a status update now.
        reply: bool,
    },
}

/// A slot just created, with the snapshot it exported.
pub struct CreatedSlot {
    /// The slot's consistent point: streaming starts here.
    pub consistent_point: Lsn,
    /// The snapshot's name for `SET TRANSACTION SNAPSHOT`.
    pub snapshot: String,
}

/// A byte stream to PostgreSQL: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection in replication mode.
pub struct ReplicationConnection {
    stream: Box<dyn Stream>,
    read: BytesMut,
    write: BytesMut,
}

impl ReplicationConnection {
    /// Connect (with TLS as `tls` asks), authenticate and wait until the server is ready for
    /// a query.
    pub async fn connect(target: &Target, tls: &Tls, timeout: Duration) -> Result<Self> {
        let address = format!("{}:{}", target.host, target.port);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| {
                postgres_error(
                    format!("connecting to PostgreSQL at {address} timed out"),
                    true,
                )
            })?
            .map_err(|e| {
                postgres_error(
                    format!("cannot connect to PostgreSQL at {address}: {e}"),
                    true,
                )
            })?;
        stream.set_nodelay(true).ok();
        let stream = if tls.mode == crate::capture::tls::Mode::Disable {
            Box::new(stream)
        } else {
            negotiate_tls(stream, &target.host, tls, &address).await?
        };
        let mut connection = ReplicationConnection {
            stream,
            read: BytesMut::with_capacity(1 << 16),
            write: BytesMut::with_capacity(1 << 12),
        };
        connection.startup(target).await?;
        Ok(connection)
    }

    async fn startup(&mut self, target: &Target) -> Result<()> {
        // Text output of every value in the forms the encoders parse, whatever the server's
        // or the role's defaults are.
        let options = "-c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c TimeZone=UTC \
                       -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C";
        let parameters = [
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
            ("replication", "database"),
            ("application_name", "changestream capture"),
            ("client_encoding", "UTF8"),
            ("options", options),
        ];
        let mut body = BytesMut::new();
        body.put_i32(196_608); // protocol 3.0
        for (key, value) in parameters {
            put_cstr(&mut body, key);
            put_cstr(&mut body, value);
        }
        body.put_u8(0);
        self.write.put_i32(body.len() as i32 + 4);
        self.write.extend_from_slice(&body);
        self.flush().await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let message = self.receive_any().await?;
            match message.tag {
                b'E' => return Err(startup_error(&message.body, &target.user)),
                b'N' => log::info!("PostgreSQL: {}", fields(&message.body).message),
                b'R' => {
                    let mut body = message.body;
                    let kind = body.get_i32();
                    match kind {
                        0 => {}
                        3 => {
                            let password = password(target)?;
                            let mut text = password.clone();
                            text.push(0);
                            self.send(b'p', &text).await?;
                        }
                        5 => {
                            let salt = [body[0], body[1], body[2], body[3]];
                            let hash = postgres_protocol::authentication::md5_hash(
                                target.user.as_bytes(),
                                &password(target)?,
                                salt,
                            );
                            let mut text = hash.into_bytes();
                            text.push(0);
                            self.send(b'p', &text).await?;
                        }
                        10 => {
                            let offered = body[..]
                                .split(|b| *b == 0)
                                .any(|m| m == SCRAM_SHA_256.as_bytes());
                            if !offered {
                                return Err(postgres_error(
                                    "PostgreSQL offers no SASL mechanism this client speaks \
                                     (SCRAM-SHA-256 without channel binding)",
                                    false,
                                ));
                            }
                            let session =
                                ScramSha256::new(&password(target)?, ChannelBinding::unsupported());
                            let mut out = BytesMut::new();
                            put_cstr(&mut out, SCRAM_SHA_256);
                            out.put_i32(session.message().len() as i32);
                            out.extend_from_slice(session.message());
                            self.send(b'p', &out).await?;
                            scram = Some(session);
                        }
                        11 => {
                            let session = scram.as_mut().ok_or_else(|| {
                                postgres_error("PostgreSQL sent SASL data out of turn", false)
                            })?;
                            session.update(&body).map_err(|e| {
                                postgres_error(format!("SCRAM authentication failed: {e}"), false)
                            })?;
                            let response = session.message().to_vec();
                            self.send(b'p', &response).await?;
                        }
                        12 => {
                            let mut session = scram.take().ok_or_else(|| {
                                postgres_error("PostgreSQL sent SASL data out of turn", false)
                            })?;
                            session.finish(&body).map_err(|e| {
                                postgres_error(format!("SCRAM authentication failed: {e}"), false)
                            })?;
                        }
                        other => {
                            return Err(postgres_error(
                                format!("PostgreSQL asks for an authentication method this client does not speak ({other})"),
                                false,
                            ))
                        }
                    }
                }
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }

    /// Run one command; the rows of its (single) result, as text.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut text = sql.as_bytes().to_vec();
        text.push(0);
        self.send(b'Q', &text).await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let message = self.receive_any().await?;
            match message.tag {
                b'D' => rows.push(data_row(message.body)),
                b'E' => failure = Some(server_error(&message.body)),
                b'Z' => break,
                _ => {}
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(rows),
        }
    }

    /// Create a logical slot with pgoutput, exporting its snapshot.
    pub async fn create_slot(&mut self, slot: &str) -> Result<CreatedSlot> {
        let rows = self
            .query(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
                quote_ident(slot)
            ))
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| postgres_error("CREATE_REPLICATION_SLOT answered no row", false))?;
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Ok(CreatedSlot {
            consistent_point: parse_lsn(&field(1))?,
            snapshot: field(2),
        })
    }

    /// Start streaming the slot from `start` (0: from its confirmed position).
    pub async fn start(&mut self, slot: &str, start: Lsn, options: &str) -> Result<()> {
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({options})",
            quote_ident(slot),
            format_lsn(start)
        );
        let mut text = sql.into_bytes();
        text.push(0);
        self.send(b'Q', &text).await?;
        loop {
            let message = self.receive().await?;
            if message.tag == b'W' {
                return Ok(());
            }
        }
    }

    /// The next replication message, or `None` when nothing came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Replicated>> {
        let message = match tokio::time::timeout(wait, self.receive()).await {
            Err(_) => return Ok(None),
            Ok(message) => message?,
        };
        match message.tag {
            b'd' => {
                let mut body = message.body;
                if body.is_empty() {
                    return Err(postgres_error("empty replication message", false));
                }
                match body.get_u8() {
                    b'w' if body.len() >= 24 => {
                        let start = body.get_u64();
                        let _end = body.get_u64();
                        let _sent = body.get_i64();
                        Ok(Some(Replicated::Data { start, data: body }))
                    }
                    b'k' if body.len() >= 17 => {
                        let wal_end = body.get_u64();
                        let _sent = body.get_i64();
                        let reply = body.get_u8() == 1;
                        Ok(Some(Replicated::Keepalive { wal_end, reply }))
                    }
                    other => Err(postgres_error(
                        format!("unexpected replication message {:?}", other as char),
                        false,
                    )),
                }
            }
            b'c' => Err(postgres_error(
                "PostgreSQL ended the replication stream",
                true,
            )),
            _ => Ok(None),
        }
    }

    /// Tell the server that everything before `confirmed` is safe (written, flushed, applied);
    /// `ask`: request a keepalive in answer (it carries the server's sent position).
    pub async fn confirm(&mut self, confirmed: Lsn, ask: bool) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
            - PG_EPOCH_OFFSET_MICROS;
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(confirmed);
        body.put_u64(confirmed);
        body.put_u64(confirmed);
        body.put_i64(now);
        body.put_u8(u8::from(ask));
        self.send(b'd', &body).await
    }

    /// End the stream and the connection politely.
    pub async fn close(mut self) {
        let _ = self.send(b'c', &[]).await;
        let _ = self.send(b'X', &[]).await;
    }

    async fn send(&mut self, tag: u8, body: &[u8]) -> Result<()> {
        self.write.put_u8(tag);
        self.write.put_i32(body.len() as i32 + 4);
        self.write.extend_from_slice(body);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<()> {
        let result = self.stream.write_all(&self.write).await;
        self.write.clear();
        result.map_err(|e| postgres_error(format!("lost the PostgreSQL connection: {e}"), true))
    }

    /// The next message; an error response becomes an error, notices are logged.
    async fn receive(&mut self) -> Result<Message> {
        loop {
            let message = self.receive_any().await?;
            match message.tag {
                b'E' => return Err(server_error(&message.body)),
                b'N' => log::info!("PostgreSQL: {}", fields(&message.body).message),
                _ => return Ok(message),
            }
        }
    }

    async fn receive_any(&mut self) -> Result<Message> {
        loop {
            if self.read.len() >= 5 {
                let length =
                    i32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]]);
                let total = 1 + length as usize;
                if length >= 4 && self.read.len() >= total {
                    let mut frame = self.read.split_to(total);
                    let tag = frame[0];
                    frame.advance(5);
                    return Ok(Message { tag, body: frame });
                }
                self.read.reserve(total.saturating_sub(self.read.len()));
            }
            if self.read.capacity() - self.read.len() < 8192 {
                self.read.reserve(1 << 16);
            }
            let read = self.stream.read_buf(&mut self.read).await.map_err(|e| {
                postgres_error(format!("lost the PostgreSQL connection: {e}"), true)
            })?;
            if read == 0 {
                return Err(postgres_error("PostgreSQL closed the connection", true));
            }
        }
    }
}

fn password(target: &Target) -> Result<Vec<u8>> {
    target.password.clone().ok_or_else(|| {
        postgres_error(
            "PostgreSQL asks for a password and the DSN gives none",
            false,
        )
    })
}

fn put_cstr(buf: &mut BytesMut, text: &str) {
    buf.extend_from_slice(text.as_bytes());
    buf.put_u8(0);
}

/// An identifier quoted for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn data_row(mut body: BytesMut) -> Vec<Option<String>> {
    let count = body.get_i16();
    (0..count)
        .map(|_| {
            let length = body.get_i32();
            if length < 0 {
                None
            } else {
                let value = body.split_to(length as usize);
                Some(String::from_utf8_lossy(&value).into_owned())
            }
        })
        .collect()
}

struct Fields {
    code: String,
    message: String,
}

fn fields(body: &[u8]) -> Fields {
    let mut out = Fields {
        code: String::new(),
        message: String::new(),
    };
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        let text = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'C' => out.code = text,
            b'M' => out.message = text,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    out
}

/// Ask the server for TLS (SSLRequest) and do the handshake; a server that declines is
/// refused unless `sslmode` is `prefer`.
async fn negotiate_tls(
    mut tcp: TcpStream,
    host: &str,
    tls: &Tls,
    address: &str,
) -> Result<Box<dyn Stream>> {
    let lost = |e: std::io::Error| {
        postgres_error(
            format!("lost the PostgreSQL connection at {address}: {e}"),
            true,
        )
    };
    // Length 8, request code 1234 5679.
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .map_err(lost)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(lost)?;
    match answer[0] {
        b'S' => {
            let connector = tokio_native_tls::TlsConnector::from(tls.connector.clone());
            let stream = connector.connect(host, tcp).await.map_err(|e| {
                postgres_error(
                    format!("TLS with PostgreSQL at {address} failed: {e}"),
                    false,
                )
            })?;
            Ok(Box::new(stream))
        }
        b'N' if !tls.mode.required() => Ok(Box::new(tcp)),
        _ => Err(Error::Config(format!(
            "PostgreSQL at {address} does not accept TLS, which the DSN's sslmode requires"
        ))),
    }
}

/// The server's refusal of the replication connection: a role without the REPLICATION
/// attribute (insufficient privilege) is a configuration error and says what to change.
fn startup_error(body: &[u8], user: &str) -> Error {
    let Fields { code, message } = fields(body);
    if code == "42501" {
        return Error::Config(format!(
            "PostgreSQL refuses role {user:?} a replication connection ({message}): capture \
             needs a role with the REPLICATION attribute (ALTER ROLE … REPLICATION) or a \
             superuser"
        ));
    }
    server_error(body)
}

/// The server's error as ours: a connection-level failure (admin shutdown, too many
/// connections, a slot still in use) may pass, the rest will not.
fn server_error(body: &[u8]) -> Error {
    let Fields { code, message } = fields(body);
    let retriable =
        code.starts_with("08") || code.starts_with("57") || code == "53300" || code == "55006";
    postgres_error(format!("PostgreSQL error {code}: {message}"), retriable)
}
