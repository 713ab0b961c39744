#!/usr/bin/env python3
"""Small helpers for stack.sh (standard library only).

stackutil.py free-ports N         print N distinct free TCP ports on 127.0.0.1
stackutil.py cluster-id           print a random Kafka cluster id (22 chars)
stackutil.py tcp HOST PORT        exit 0 if a TCP connect succeeds
stackutil.py kafka HOST PORT      exit 0 if the broker answers a Metadata request
                                  listing at least one broker
stackutil.py http URL             exit 0 if GET URL returns 200
"""

from __future__ import annotations

import base64
import socket
import struct
import sys
import urllib.error
import urllib.request
import uuid

TIMEOUT = 3.0


def free_ports(n: int) -> int:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()
    return 0


def cluster_id() -> int:
    # Like Kafka's own ids, never one starting with "-": the storage tool would read it as an
    # option ("argument --cluster-id/-t: expected one argument").
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            print(text)
            return 0


def tcp(host: str, port: str) -> int:
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT):
            return 0
    except OSError:
        return 1


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def kafka(host: str, port: str) -> int:
    """Send Metadata v4 (non-flexible; still supported by Kafka 4.x) for no topics."""
    client_id = b"stack-check"
    corr = 7
    header = struct.pack(">hhih", 3, 4, corr, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array, allow_auto_topic_creation=false
    req = header + body
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
            s.settimeout(TIMEOUT)
            s.sendall(struct.pack(">i", len(req)) + req)
            (size,) = struct.unpack(">i", _recv_exact(s, 4))
            resp = _recv_exact(s, size)
    except (OSError, EOFError) as e:
        print(f"kafka check: {e}", file=sys.stderr)
        return 1
    try:
        rcorr, _throttle, nbrokers = struct.unpack_from(">iii", resp, 0)
    except struct.error:
        return 1
    if rcorr != corr or nbrokers < 1:
        print(f"kafka check: corr={rcorr} brokers={nbrokers}", file=sys.stderr)
        return 1
    return 0


def http(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return 0 if r.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "free-ports":
        return free_ports(int(args[0]))
    if cmd == "cluster-id":
        return cluster_id()
    if cmd == "tcp":
        return tcp(*args)
    if cmd == "kafka":
        return kafka(*args)
    if cmd == "http":
        return http(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
