"""A throwaway PostgreSQL cluster for tests that need server settings the stack's does not have.

``throwaway_postgres(settings)`` runs ``initdb`` in a fresh directory with the PostgreSQL
binaries the stack uses (``STACK_PG_BIN``, else the newest ``/usr/lib/postgresql/<ver>/bin``,
as tests/stack/stack.sh finds them), starts the server on a free 127.0.0.1 port with the given
``-c`` settings, yields its DSN (user ``postgres``, trust authentication) and deletes it all at
the end. ``files`` (name → content) are written beside the data directory, readable by the
server only (a TLS key, an ``hba_file``); ``{root}`` in a setting is their directory. As root
the binaries run as the ``postgres`` user, as in the stack.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def pg_bin() -> Path:
    """The directory of the PostgreSQL server binaries."""
    if os.environ.get("STACK_PG_BIN"):
        return Path(os.environ["STACK_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/<ver>/bin")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_postgres(
    settings: Mapping[str, str], files: Mapping[str, bytes] | None = None
) -> Iterator[str]:
    """A running cluster with ``settings`` (and ``files``); yields its DSN."""
    binaries = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="changestream-pg-"))
    data = root / "data"
    for name, content in (files or {}).items():
        path = root / name
        path.write_bytes(content)
        path.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    options = " ".join(
        [f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"]
        + [f"-c {name}={value.format(root=root)}" for name, value in settings.items()]
    )
    pg_ctl = str(binaries / "pg_ctl")
    try:
        subprocess.run(
            _as_postgres([str(binaries / "initdb"), "-D", str(data), "--auth=trust", "--no-sync"]),
            cwd=root,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            _as_postgres(
                [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options, "start"]
            ),
            cwd=root,
            check=True,
            capture_output=True,
            timeout=90,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                cwd=root,
                check=False,
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
