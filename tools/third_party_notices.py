"""Write THIRD-PARTY-NOTICES.md: the licenses of everything the extension links in.

The release extension links librdkafka, OpenSSL, zstd and zlib statically (built from the
sources the -sys crates vendor) and the Rust crates of its dependency graph. Run by
``make notices`` after a dependency changes; the file goes into the wheel and the sdist.
``--check`` (run by ``make lint``) only says whether the file is out of date.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The C libraries: (crate vendoring it, what it is, its license files inside the crate).
NATIVE = [
    ("rdkafka-sys", "librdkafka (and what it bundles)", ["librdkafka/LICENSES.txt"]),
    ("openssl-src", "OpenSSL", ["openssl/LICENSE.txt"]),
    ("zstd-sys", "Zstandard (zstd)", ["zstd/LICENSE"]),
    ("libz-sys", "zlib", ["src/zlib/LICENSE"]),
]
LICENSE_NAMES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")
TARGETS = ("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu")


def linked_packages() -> tuple[list[dict[str, object]], dict[str, dict[str, object]]]:
    """Every Rust package the extension (the `python` feature) links on Linux (no dev or build
    dependencies), and every package of the graph by name (the C sources are in build
    dependencies)."""
    packages: dict[str, dict[str, object]] = {}
    everything: dict[str, dict[str, object]] = {}
    for target in TARGETS:
        metadata = json.loads(
            subprocess.run(
                [
                    "cargo",
                    "metadata",
                    "--format-version",
                    "1",
                    "--features",
                    "python",
                    "--filter-platform",
                    target,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        by_id = {p["id"]: p for p in metadata["packages"]}
        everything.update({p["name"]: p for p in metadata["packages"]})
        nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
        seen: set[str] = set()
        todo = [metadata["resolve"]["root"]]
        while todo:
            node = nodes[todo.pop()]
            for dep in node["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if None in kinds and dep["pkg"] not in seen:  # normal dependencies only
                    seen.add(dep["pkg"])
                    todo.append(dep["pkg"])
        for package_id in seen:
            package = by_id[package_id]
            packages[f"{package['name']} {package['version']}"] = package
    linked = sorted(packages.values(), key=lambda p: (str(p["name"]), str(p["version"])))
    return linked, everything


def license_texts(package: dict[str, object]) -> list[str]:
    directory = Path(str(package["manifest_path"])).parent
    return [
        path.read_text(errors="replace").strip()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name.upper().startswith(LICENSE_NAMES)
    ]


def main(check: bool) -> int:
    packages, by_name = linked_packages()
    out = [
        "# Third-party notices",
        "",
        "The changestream extension module links the following software. Their licenses follow.",
        "",
        "## C libraries linked statically",
        "",
    ]
    for crate, what, files in NATIVE:
        package = by_name[crate]
        directory = Path(str(package["manifest_path"])).parent
        out += [f"### {what} (from the `{crate}` {package['version']} crate)", "", "```"]
        out += [(directory / name).read_text(errors="replace").strip() for name in files]
        out += ["```", ""]
    out += [
        "## Rust crates",
        "",
        "| crate | version | license |",
        "|---|---|---|",
    ]
    out += [f"| {p['name']} | {p['version']} | {p['license'] or 'see below'} |" for p in packages]
    out += ["", "### License texts of the Rust crates", ""]
    # One copy of each distinct text (ignoring layout), with the crates it belongs to.
    texts: dict[str, tuple[str, list[str]]] = {}
    for package in packages:
        for text in license_texts(package):
            owners = texts.setdefault(" ".join(text.split()), (text, []))[1]
            owners.append(f"{package['name']} {package['version']}")
    for text, owners in texts.values():
        out += [f"#### {', '.join(owners)}", "", "```", text.replace("```", "'''"), "```", ""]
    notices = ROOT / "THIRD-PARTY-NOTICES.md"
    if check:
        if notices.read_text() != "\n".join(out):
            print(f"{notices.name} is out of date with Cargo.lock: run `make notices`")
            return 1
        return 0
    notices.write_text("\n".join(out))
    print(f"THIRD-PARTY-NOTICES.md: {len(packages)} crates, {len(texts)} distinct license texts")
    return 0


if __name__ == "__main__":
    sys.exit(main(check=sys.argv[1:] == ["--check"]))
