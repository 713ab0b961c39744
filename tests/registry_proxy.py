"""A guarded front for the stack's schema registry, for the registry client tests.

The stack's Apicurio registry speaks plain HTTP without authentication. To test
the client's HTTPS, custom CA, client certificate, basic auth and bearer token
support against the real registry, :class:`RegistryProxy` listens on 127.0.0.1,
optionally terminates TLS (and optionally demands a client certificate), checks
the credentials a test configured, and forwards the request to the registry.
:func:`make_pki` generates the certificates with the ``cryptography`` package:
a CA, a server certificate it signs for 127.0.0.1 and localhost, a client
certificate, a server certificate for another host name, and a second CA that
signed nothing the server presents.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import ipaddress
import json
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files :func:`make_pki` wrote."""

    ca: Path
    """The CA that signed the server and client certificates."""
    other_ca: Path
    """A CA that signed nothing the proxy presents."""
    server_cert: Path
    server_key: Path
    """For 127.0.0.1 and localhost."""
    wrong_host_cert: Path
    wrong_host_key: Path
    """Signed by ``ca``, but only for ``registry.invalid``."""
    client_cert: Path
    client_key: Path
    """A client certificate signed by ``ca``; the key is unencrypted PKCS#8."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, _validity(builder).sign(key, hashes.SHA256())


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    hosts: list[str],
    client: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, _validity(builder).sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def make_pki(directory: Path) -> Pki:
    """Generate the test certificates into ``directory``."""
    ca_key, ca_cert = _make_ca("changestream test CA")
    _, other_ca_cert = _make_ca("changestream unrelated CA")
    server_key, server_cert = _issue(
        ca_key, ca_cert, "registry proxy", hosts=["127.0.0.1", "localhost"]
    )
    wrong_key, wrong_cert = _issue(ca_key, ca_cert, "elsewhere", hosts=["registry.invalid"])
    client_key, client_cert = _issue(ca_key, ca_cert, "changestream client", hosts=[], client=True)
    return Pki(
        ca=_write_cert(directory / "ca.pem", ca_cert),
        other_ca=_write_cert(directory / "other-ca.pem", other_ca_cert),
        server_cert=_write_cert(directory / "server.pem", server_cert),
        server_key=_write_key(directory / "server.key", server_key),
        wrong_host_cert=_write_cert(directory / "wrong-host.pem", wrong_cert),
        wrong_host_key=_write_key(directory / "wrong-host.key", wrong_key),
        client_cert=_write_cert(directory / "client.pem", client_cert),
        client_key=_write_key(directory / "client.key", client_key),
    )


def server_tls(cert: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server-side TLS context; with ``client_ca`` it demands a client certificate it signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


# ---------------------------------------------------------------------------
# The proxy
# ---------------------------------------------------------------------------


@dataclass
class Seen:
    """What the proxy saw: the paths it forwarded, requests it refused, failed handshakes."""

    forwarded: list[str] = field(default_factory=list)
    unauthorized: int = 0
    handshake_failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: RegistryProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up mid-request is part of these tests, not a failure to print.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        proxy = self.server.proxy
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as error:
                with proxy.seen.lock:
                    proxy.seen.handshake_failures.append(str(error))
                raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        proxy = self.server.proxy
        if not proxy.authorized(self.headers.get("Authorization")):
            with proxy.seen.lock:
                proxy.seen.unauthorized += 1
            self._reply(401, json.dumps({"error_code": 40101, "message": "Unauthorized"}).encode())
            return
        with proxy.seen.lock:
            proxy.seen.forwarded.append(self.path)
        request = urllib.request.Request(
            proxy.upstream_origin + self.path,
            headers={"Accept": self.headers.get("Accept", "application/json")},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                self._reply(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            with error:
                self._reply(error.code, error.read())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class RegistryProxy:
    """Forwards GET requests to ``upstream`` (the registry's base URL) from 127.0.0.1.

    ``basic=(user, password)`` or ``bearer=token`` makes it answer 401 to any other
    credentials; ``tls`` (see :func:`server_tls`) makes it speak HTTPS. Use it as a
    context manager, or :meth:`start` and :meth:`stop`: after :meth:`stop` the port
    refuses connections, as a registry that is down does.
    """

    def __init__(
        self,
        upstream: str,
        *,
        basic: tuple[str, str] | None = None,
        bearer: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path.rstrip("/")
        self._expected: str | None = None
        if basic is not None:
            pair = f"{basic[0]}:{basic[1]}".encode()
            self._expected = "Basic " + base64.b64encode(pair).decode()
        if bearer is not None:
            self._expected = f"Bearer {bearer}"
        self._tls = tls
        self.seen = Seen()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL to give changestream: same path as the registry's, our host and port."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.path}"

    def authorized(self, header: str | None) -> bool:
        if self._expected is None:
            return True
        return header is not None and hmac.compare_digest(header.encode(), self._expected.encode())

    def start(self) -> RegistryProxy:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.proxy = self
        if self._tls is not None:
            # The handshake runs in the request's thread (see _Handler.setup), so a client
            # that fails it cannot stall the accept loop.
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="registry-proxy")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> RegistryProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
