"""changestream against the Python Kafka + Avro peers, side by side, on the stack's Kafka.

    .venv/bin/python benches/bench.py [--events N] [--only a,b,...] [--datasets debezium,rows]
                                      [--repeat K] [--no-write]

Produces the two datasets once (see datagen.py; reused while the topics hold N events), runs
every variant (see variants.py) in a fresh process per dataset, prints a table and writes
benches/results.md and benches/results.png. Needs the stack (tests/stack/stack.sh up; started
here when its status check fails) and its addresses from .stack.env at the repo root, or
KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL in the environment.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import datagen  # noqa: E402
import latency  # noqa: E402
import report  # noqa: E402
from variants import VARIANTS  # noqa: E402

STACK_SCRIPT = ROOT / "tests" / "stack" / "stack.sh"
STACK_ENV = ROOT / ".stack.env"


def stack_addresses() -> tuple[str, str]:
    """(bootstrap servers, registry URL): from the environment, else the running stack."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        return bootstrap, registry
    status = subprocess.run(["bash", str(STACK_SCRIPT), "status"], capture_output=True, cwd=ROOT)
    if status.returncode != 0 or not STACK_ENV.exists():
        print("starting the stack (tests/stack/stack.sh up)", file=sys.stderr)
        subprocess.run(["bash", str(STACK_SCRIPT), "up"], check=True, cwd=ROOT, timeout=1800)
    env: dict[str, str] = {}
    for line in STACK_ENV.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            words = shlex.split(value, comments=True)
            env[key.strip()] = words[0] if words else ""
    return env["KAFKA_BOOTSTRAP_SERVERS"], env["SCHEMA_REGISTRY_URL"]


def pin_changestream(into: Path) -> str | None:
    """Copy the importable changestream package into ``into``; describe the copy.

    The variants import this copy (it goes first on their PYTHONPATH), so every changestream
    variant measures the same build even if the extension is rebuilt while the benchmark runs.
    """
    spec = importlib.util.find_spec("changestream")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations)))
    shutil.copytree(source, into / "changestream", ignore=shutil.ignore_patterns("__pycache__"))
    extensions = sorted((into / "changestream").glob("_core*.so"))
    if not extensions:
        return f"{source} (no compiled extension found)"
    built = datetime.datetime.fromtimestamp(
        (source / extensions[0].name).stat().st_mtime, datetime.timezone.utc
    )
    where = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source.name
    return f"{where}, extension built {built:%Y-%m-%d %H:%M} UTC"


def batches_available() -> bool:
    try:
        from changestream import ChangeStream
    except ImportError:
        return False
    return hasattr(ChangeStream, "batches")


def run_variant(
    variant: str,
    topic: str,
    events: int,
    bootstrap: str,
    registry: str,
    timeout: float,
    env: dict[str, str],
) -> dict[str, Any]:
    """Run one variant in a fresh interpreter; its JSON result, or {"error": ...}."""
    command = [
        sys.executable,
        str(HERE / "variants.py"),
        variant,
        topic,
        str(events),
        bootstrap,
        registry,
    ]
    load = os.getloadavg()[0]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "load_1m": load}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200], "load_1m": load}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_1m"] = load
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (the lower one of an even count); peak RSS is the largest."""
    good = sorted((r for r in runs if "error" not in r), key=report.rate)
    if not good:
        return runs[-1]
    chosen = dict(good[(len(good) - 1) // 2])
    chosen["rss_kib"] = max(r["rss_kib"] for r in good)
    chosen["runs"] = len(good)
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per dataset")
    parser.add_argument(
        "--only", default=",".join(VARIANTS), help="variants to run, e.g. a,b,e (default: all)"
    )
    parser.add_argument(
        "--datasets", default=",".join(datagen.DATASETS), help="debezium,rows (default: both)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the median counts")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per variant run")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table only; leave results.* alone"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    parser.add_argument(
        "--from-json", type=Path, help="run nothing: redo the outputs from a --json file"
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="measure only the latency (latency.py); rewrite only its section of results.md",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        if "runs" in saved:
            outputs(saved, write=not args.no_write)
        else:  # written by --latency-only
            print(report.latency_terminal_table(saved["latency"]))
            if not args.no_write:
                results = HERE / "results.md"
                results.write_text(report.replace_latency(results.read_text(), saved["latency"]))
        return 0

    variants = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if unknown or any(d not in datagen.DATASETS for d in datasets):
        parser.error(f"unknown variant or dataset: {unknown or datasets}")
    if "g" in variants and not batches_available():
        print("(g) skipped: this changestream has no ChangeStream.batches()", file=sys.stderr)
        variants.remove("g")
    latency_variants = (
        [] if args.no_latency else [v for v in latency.LATENCY_VARIANTS if v in variants]
    )

    bootstrap, registry = stack_addresses()
    started = datetime.datetime.now(datetime.timezone.utc)
    if args.latency_only:
        return latency_only(args, latency_variants, bootstrap, registry, started)
    load_start = os.getloadavg()
    print(
        f"{args.events:,} events per dataset; load average {load_start[0]:.2f} "
        f"{load_start[1]:.2f} {load_start[2]:.2f} on {os.cpu_count()} cores",
        file=sys.stderr,
    )
    topics = {}
    for dataset in datasets:
        print(f"data: {dataset}", file=sys.stderr)
        topics[dataset] = datagen.ensure(dataset, args.events, bootstrap, registry)

    pinned = Path(tempfile.mkdtemp(prefix="changestream-bench-"))
    atexit.register(shutil.rmtree, pinned, ignore_errors=True)
    measured_build = pin_changestream(pinned)
    machine = {**report.machine(), "changestream measured": measured_build or "absent"}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(pinned), os.environ.get("PYTHONPATH", "")) if p
    )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        d: {v: [] for v in variants} for d in datasets
    }
    for repeat in range(args.repeat):
        for dataset in datasets:
            for variant in variants:
                t0 = time.monotonic()
                result = run_variant(
                    variant, topics[dataset], args.events, bootstrap, registry, args.timeout, env
                )
                runs[dataset][variant].append(result)
                if "error" in result:
                    shown = f"FAILED: {result['error']}"
                else:
                    shown = (
                        f"{report.rate(result):>12,.0f} events/s  "
                        f"{result['rss_kib'] / 1024:6.0f} MB"
                    )
                print(
                    f"  [{repeat + 1}/{args.repeat}] {dataset:8} ({variant}) {shown}  "
                    f"({time.monotonic() - t0:.0f} s, load {result['load_1m']:.2f})",
                    file=sys.stderr,
                )
    command = "make bench" if os.environ.get("MAKELEVEL") else "benches/bench.py"
    if args.events != 1_000_000:
        command += f" --events {args.events}"
    if args.repeat > 1:
        command += f" --repeat {args.repeat}"
    latency_record = None
    if latency_variants:
        print("latency", file=sys.stderr)
        latency_record = latency.measure(
            latency_variants, bootstrap, registry, repeat=args.repeat, env=env
        )
        latency_record.update(command=command, date=started.strftime("%Y-%m-%d %H:%M UTC"))
    load_end = os.getloadavg()
    loads = [r["load_1m"] for by_v in runs.values() for rs in by_v.values() for r in rs]
    record = {
        "events": args.events,
        "repeat": args.repeat,
        "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load": {
            "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load_start),
            "load average at end (1/5/15 min)": " / ".join(f"{x:.2f}" for x in load_end),
            "1-min load average when each variant started": f"{min(loads):.2f} to {max(loads):.2f}",
        },
        "max_load": max(loads),
        "runs": runs,
        "latency": latency_record,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    outputs(record, write=not args.no_write)
    return 0


def latency_only(
    args: argparse.Namespace,
    variants: list[str],
    bootstrap: str,
    registry: str,
    started: datetime.datetime,
) -> int:
    """``--latency-only``: measure the latency, print it, and (unless ``--no-write``) replace
    the latency section of results.md, leaving the rest of it as it was."""
    record = latency.measure(variants, bootstrap, registry, repeat=args.repeat)
    command = "benches/bench.py --latency-only"
    if args.repeat > 1:
        command += f" --repeat {args.repeat}"
    record.update(command=command, date=started.strftime("%Y-%m-%d %H:%M UTC"))
    if args.json:
        args.json.write_text(json.dumps({"latency": record}, indent=1))
    print()
    print(report.latency_terminal_table(record))
    for line in report.latency_targets(record):
        print(line.removeprefix("- "))
    results = HERE / "results.md"
    if not args.no_write and results.exists():
        results.write_text(report.replace_latency(results.read_text(), record))
        print(f"\nwrote the latency section of {results}", file=sys.stderr)
    return 0


def outputs(record: dict[str, Any], *, write: bool) -> None:
    """Print the table; unless ``write`` is false, write results.md and results.png."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = record["runs"]
    results = {
        d: {v: median_run(rs) for v, rs in by_variant.items()} for d, by_variant in runs.items()
    }
    print()
    for dataset, by_variant in results.items():
        print(report.terminal_table(dataset, by_variant))
        print()
    latency_record = record.get("latency")
    if latency_record:
        print(report.latency_terminal_table(latency_record))
        print()
    targets = report.targets(results)
    if latency_record:
        targets += report.latency_targets(latency_record)
    for line in targets:
        print(line.removeprefix("- "))
    cores = os.cpu_count() or 1
    busy = record["max_load"] > cores
    if busy:
        print(
            f"\nthe 1-min load average reached {record['max_load']:.1f} on {cores} cores: "
            "other work shared the CPUs, so the figures are lower than on an idle machine",
            file=sys.stderr,
        )
    if not write:
        return
    info = record["machine"]
    (HERE / "results.md").write_text(
        report.markdown(
            results,
            events=record["events"],
            repeat=record["repeat"],
            info={**info, "date": record["date"]},
            load=record["load"],
            command=record["command"],
            busy=busy,
            latency=latency_record,
        )
    )
    subtitle = (
        f"{record['events']:,} events per dataset, {info['cores']} cores ({info['cpu']}), "
        f"{info['python']}, {record['date'][:10]}, "
        f"1-min load average up to {record['max_load']:.1f}"
    )
    report.chart(results, HERE / "results.png", subtitle)
    print(f"\nwrote {HERE / 'results.md'} and {HERE / 'results.png'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
