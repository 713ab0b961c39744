"""The examples in examples/ run against the stack (CI runs them through this file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(180)
def test_shop_demo_prints_every_change(stack: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "shop_demo.py")],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # The demo publishes a snapshot, inserts, updates and deletes of both tables.
    for op in ("read", "insert", "update", "delete"):
        assert any(line.startswith(op) for line in lines), f"no {op} line in:\n{done.stdout}"
    assert any("'pending' -> 'shipped'" in line for line in lines), done.stdout
