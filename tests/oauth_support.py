"""SASL/OAUTHBEARER helpers for tests: unsecured JWTs and a recording token callback.

The stack's broker has an OAUTHBEARER listener (``KAFKA_OAUTHBEARER_BOOTSTRAP_SERVERS``)
validated by Kafka's ``OAuthBearerUnsecuredValidatorCallbackHandler``: it accepts a JWS
with ``"alg": "none"`` and no signature, takes the principal from ``sub`` and refuses a
token past its ``exp``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsecured_jwt(subject: str, expires: float, issued: float | None = None) -> str:
    """An unsigned JWS (``header.payload.``) naming ``subject`` until ``expires`` (epoch s)."""
    claims = {"sub": subject, "iat": issued if issued is not None else time.time(), "exp": expires}
    return f"{_b64url({'alg': 'none'})}.{_b64url(claims)}."


def oauthbearer_settings(config: str = "") -> dict[str, str]:
    """librdkafka settings for the stack's OAUTHBEARER listener."""
    settings = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER"}
    if config:
        settings["sasl.oauthbearer.config"] = config
    return settings


@dataclass
class TokenIssuer:
    """An ``oauth_cb`` that issues unsecured JWTs living ``lifetime`` seconds and records
    each call: the argument, the time, the thread, the token. ``fail_from`` makes the call
    with that index (0-based) and every later one raise ``RuntimeError``; ``token_lifetime``
    (default ``lifetime``) is the ``exp`` written in the JWT itself, for tokens the client
    takes for valid and the broker refuses."""

    subject: str = "alice"
    lifetime: float = 300.0
    fail_from: int | None = None
    token_lifetime: float | None = None
    configs: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def __call__(self, config: str) -> tuple[str, float, str]:
        self.configs.append(config)
        self.times.append(time.monotonic())
        self.threads.append(threading.current_thread().name)
        if self.fail_from is not None and len(self.configs) > self.fail_from:
            raise RuntimeError("the identity provider is unreachable")
        now = time.time()
        jwt_lifetime = self.lifetime if self.token_lifetime is None else self.token_lifetime
        token = unsecured_jwt(self.subject, now + jwt_lifetime, issued=now)
        self.tokens.append(token)
        return token, now + self.lifetime, self.subject

    @property
    def calls(self) -> int:
        return len(self.configs)
