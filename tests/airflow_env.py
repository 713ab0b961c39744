"""A virtual environment with Apache Airflow, apart from the test environment (Airflow pins
many packages), created once and cached under ``${XDG_CACHE_HOME:-~/.cache}/changestream/``.

changestream itself is not installed there: runs put the build under test on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

AIRFLOW_VERSION = "3.3.2"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "changestream"


def airflow_venv() -> Path:
    """The environment's directory (``bin/airflow`` inside), made if it is not cached yet."""
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    home = cache_dir() / f"airflow-{AIRFLOW_VERSION}-{python}"
    if (home / ".complete").exists():
        return home
    # A half-made environment (an interrupted install) is made again from scratch.
    shutil.rmtree(home, ignore_errors=True)
    venv.create(home, with_pip=True)
    subprocess.run(
        [home / "bin" / "python", "-m", "pip", "install", "--quiet",
         f"apache-airflow=={AIRFLOW_VERSION}"],
        check=True,
    )  # fmt: skip
    (home / ".complete").touch()
    return home
