"""A dedicated stack instance for tests that break things (stop the broker, delete topics).

``stack.sh`` runs one independent stack per env file: ``CHANGESTREAM_STACK_ENV`` names
the file (and with it the instance: its own temp dir, ports and lock),
``CHANGESTREAM_STACK_SERVICES`` says which services ``up`` starts, and
``CHANGESTREAM_STACK_KAFKA_SECURITY=1`` adds TLS and SASL listeners to its Kafka, and
``CHANGESTREAM_STACK_KAFKA_ACL=1`` (with security) an ACL authorizer and a super user
``admin``. This module drives such an instance from Python::

    instance = StackInstance(tmp_path / "faults.env", services=("kafka",))
    env = instance.up()          # the instance's env file, parsed
    instance.stop_kafka()        # only this instance's broker
    instance.start_kafka()
    instance.down()

It refuses the shared stack's env file (``<repo>/.stack.env``): other tests run against
that stack, and stopping its broker would break them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

STACK_DIR = Path(__file__).resolve().parent
STACK_SCRIPT = STACK_DIR / "stack.sh"
REPO_ROOT = STACK_DIR.parent.parent
SHARED_ENV_FILE = REPO_ROOT / ".stack.env"


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, as stack.sh writes them."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.startswith("#"):
            words = shlex.split(value, comments=True)
            env[key.strip()] = words[0] if words else ""
    return env


class StackInstance:
    """One independent instance of ``tests/stack/stack.sh``, named by its env file."""

    def __init__(
        self,
        env_file: Path,
        *,
        services: Sequence[str] = ("kafka",),
        kafka_security: bool = False,
        kafka_acl: bool = False,
        timeout: float = 600.0,
    ) -> None:
        env_file = Path(env_file).resolve()
        if env_file == SHARED_ENV_FILE.resolve():
            raise ValueError(f"{env_file} is the shared stack: give a dedicated env file")
        if kafka_acl and not kafka_security:
            raise ValueError("kafka_acl needs kafka_security (the users to authorize)")
        self.env_file = env_file
        self.services = tuple(services)
        self.kafka_security = kafka_security
        self.kafka_acl = kafka_acl
        self.timeout = timeout
        self.env: dict[str, str] = {}

    def _run(self, command: str) -> float:
        """Run ``stack.sh COMMAND`` for this instance; returns how long it took (seconds)."""
        environment = {
            **os.environ,
            "CHANGESTREAM_STACK_ENV": str(self.env_file),
            "CHANGESTREAM_STACK_SERVICES": ",".join(self.services),
            "CHANGESTREAM_STACK_KAFKA_SECURITY": "1" if self.kafka_security else "0",
            "CHANGESTREAM_STACK_KAFKA_ACL": "1" if self.kafka_acl else "0",
            # C1 only: the broker answers in about half the time after a restart.
            "STACK_KAFKA_JVM_OPTS": os.environ.get(
                "STACK_KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1"
            ),
        }
        started = time.monotonic()
        done = subprocess.run(
            ["bash", str(STACK_SCRIPT), command],
            env=environment,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"stack.sh {command} ({self.env_file}) failed with exit code {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return time.monotonic() - started

    def up(self) -> dict[str, str]:
        """Start the instance (or reuse it if it answers); returns its env file's settings."""
        self._run("up")
        self.env = parse_env_file(self.env_file)
        return self.env

    def down(self) -> None:
        """Stop every service of the instance and delete its data and env file."""
        self._run("down")

    def stop_kafka(self) -> float:
        """Stop the instance's broker (data kept); returns the seconds it took."""
        return self._run("stop-kafka")

    def start_kafka(self) -> float:
        """Start the broker again (same port and data); returns the seconds until it answers."""
        return self._run("start-kafka")

    @property
    def bootstrap_servers(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]
