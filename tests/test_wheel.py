"""The release wheel is self-contained: it installs into a fresh virtual environment and its
extension links no librdkafka, OpenSSL, zlib or zstd from the system; it is tagged for an old
glibc (auditwheel agrees), and carries its licenses and the metadata a package index shows."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from trove_classifiers import classifiers as known_classifiers

pytestmark = pytest.mark.wheel

WHEELS = Path(__file__).resolve().parent.parent / "target" / "wheels"


def newest_wheel() -> Path:
    wheels = sorted(WHEELS.glob("changestream-*.whl"), key=lambda p: p.stat().st_mtime)
    assert wheels, f"no wheel in {WHEELS}: run `make wheel` first"
    return wheels[-1]


def test_wheel_is_abi3_for_python_3_10() -> None:
    assert "-cp310-abi3-" in newest_wheel().name


def test_wheel_is_manylinux_for_glibc_2_28_or_older_and_auditwheel_agrees() -> None:
    wheel = newest_wheel()
    tags = re.findall(r"manylinux_2_(\d+)_(x86_64|aarch64)", wheel.name)
    assert tags, wheel.name
    assert all(int(minor) <= 28 for minor, _ in tags), wheel.name
    shown = subprocess.run(
        [Path(sys.executable).parent / "auditwheel", "show", wheel],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    text = " ".join(shown.split())
    oldest = min(int(minor) for minor, _ in tags)
    assert f'consistent with the following platform tag: "manylinux_2_{oldest}_' in text, shown


def test_wheel_carries_licenses_metadata_and_the_command() -> None:
    with zipfile.ZipFile(newest_wheel()) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        notices = wheel.read(f"{info}/licenses/THIRD-PARTY-NOTICES.md").decode()
    assert f"{info}/licenses/LICENSE" in names
    for linked in ("librdkafka", "OpenSSL", "Zstandard", "zlib", "| rdkafka |", "| pyo3 |"):
        assert linked in notices, linked
    assert "changestream=changestream.cli:main" in entry_points.replace(" ", "")
    assert "changestream/__main__.py" in names
    assert metadata["License-Expression"] == "Apache-2.0"
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    extras = metadata.get_all("Provides-Extra") or []
    assert {"pandas", "polars", "pyarrow"} <= set(extras)
    # The long description is read away from the repository: no relative links.
    description = str(metadata.get_payload())
    assert "changestream tail" in description
    links = re.findall(r"\]\(([^)]+)\)", description)
    assert all(link.startswith("https://") for link in links), links


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", newest_wheel()],
        check=True,
    )
    # Run from tmp_path so the source tree's python/ cannot be imported by mistake.
    command = subprocess.run(
        [env_dir / "bin" / "changestream", "tail", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--until {end}" in command.stdout
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


def test_wheel_metadata_is_what_pyproject_declares_and_an_index_accepts() -> None:
    """The core metadata pip and a package index read: PEP 639 licensing (an SPDX expression
    and no license classifiers beside it), known trove classifiers that match the Python
    versions the wheel installs on, and only links that work away from the repository. The
    declared values are compared with the development install's (same pyproject.toml)."""
    declared = importlib.metadata.metadata("changestream")
    with zipfile.ZipFile(newest_wheel()) as wheel:
        info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    major, minor = (int(part) for part in metadata["Metadata-Version"].split("."))
    assert (major, minor) >= (2, 4), "License-Expression needs core metadata 2.4"
    for field in ("Name", "Version", "Summary", "License-Expression", "Requires-Python"):
        assert metadata[field] == declared[field], field
    assert metadata["Description-Content-Type"].startswith("text/markdown")
    assert sorted(metadata.get_all("License-File") or []) == [
        "LICENSE",
        "THIRD-PARTY-NOTICES.md",
    ]
    assert set(metadata.get_all("Provides-Extra") or []) == set(
        declared.get_all("Provides-Extra") or []
    )

    classifiers = metadata.get_all("Classifier") or []
    assert classifiers == declared.get_all("Classifier")
    unknown = [c for c in classifiers if c not in known_classifiers]
    assert not unknown, f"not trove classifiers: {unknown}"
    # PEP 639: with a License-Expression, license classifiers are an error on upload.
    assert not [c for c in classifiers if c.startswith("License ::")]
    # abi3 from the oldest Python allowed: the versions named are that one and the next ones.
    oldest = int(metadata["Requires-Python"].removeprefix(">=3."))
    versions = [
        int(c.rsplit(".", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == list(range(oldest, oldest + len(versions))), versions
    assert len(versions) >= 4, versions

    # No home page or repository is public yet; whatever is declared must be absolute.
    for url in metadata.get_all("Project-URL") or []:
        assert url.split(", ", 1)[1].startswith("https://"), url
