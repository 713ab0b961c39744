"""The release wheel is self-contained: it installs into a fresh virtual environment and its
extension links no librdkafka, OpenSSL, zlib or zstd from the system."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

WHEELS = Path(__file__).resolve().parent.parent / "target" / "wheels"


def newest_wheel() -> Path:
    wheels = sorted(WHEELS.glob("changestream-*.whl"), key=lambda p: p.stat().st_mtime)
    assert wheels, f"no wheel in {WHEELS}: run `make wheel` first"
    return wheels[-1]


def test_wheel_is_abi3_for_python_3_10() -> None:
    assert "-cp310-abi3-" in newest_wheel().name


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", newest_wheel()],
        check=True,
    )
    # Run from tmp_path so the source tree's python/ cannot be imported by mistake.
    done = subprocess.run(
        [python, "-c", "import changestream, changestream._core as c; print(c.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    extension = Path(done.stdout.strip())
    assert extension.is_relative_to(env_dir), extension

    linked = subprocess.run(["ldd", extension], capture_output=True, text=True, check=True).stdout
    for library in ("librdkafka", "libssl", "libcrypto", "libz.so", "libzstd", "libpython"):
        assert library not in linked, f"{extension.name} links {library}:\n{linked}"
    assert sys.version_info >= (3, 10)
