"""The benchmark's outputs: the terminal table, results.md and results.png."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from variants import VARIANTS

DATASET_TITLES = {
    "debezium": "Debezium envelopes (orders, 10 columns, c/u/d)",
    "rows": "Flat rows (Bottled Water style, 10 nullable columns)",
}


def machine() -> dict[str, str]:
    """Cores, CPU model, Python and the versions of the libraries measured."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    info = {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "confluent-kafka": version("confluent-kafka"),
        "fastavro": version("fastavro"),
        "aiokafka": version("aiokafka"),
        "pyarrow": version("pyarrow"),
        "changestream": version("changestream"),
    }
    try:
        import confluent_kafka

        info["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    info["changestream source"] = _source_state()
    return info


def _source_state() -> str:
    """The commit of the working tree changestream is built from, and whether it has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "python", "Cargo.toml", "Cargo.lock"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"commit {commit or 'unknown'}" + (" with uncommitted changes" if dirty else "")


def rate(result: dict[str, Any]) -> float:
    return float(result["events"]) / float(result["first_to_last_s"])


def rate_total(result: dict[str, Any]) -> float:
    return float(result["events"]) / float(result["total_s"])


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per variant: name, events/s, events/s incl. connect, x (b), peak RSS MB."""
    base = rate(results["b"]) if "b" in results and "error" not in results["b"] else None
    out = []
    for variant, title in VARIANTS.items():
        if variant not in results:
            continue
        result = results[variant]
        name = f"({variant}) {title}"
        if "error" in result:
            out.append([name, "-", "-", "-", "-", f"failed: {result['error']}"])
            continue
        value = rate(result)
        out.append(
            [
                name,
                f"{value:,.0f}",
                f"{rate_total(result):,.0f}",
                _ratio(value, base),
                f"{result['rss_kib'] / 1024:.0f}",
                "",
            ]
        )
    return out


HEADER = ["variant", "events/s", "events/s incl. connect", "x (b)", "peak RSS MB", ""]


def terminal_table(dataset: str, results: dict[str, dict[str, Any]]) -> str:
    table = [HEADER, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = [DATASET_TITLES[dataset]]
    for index, row in enumerate(table):
        cells = [
            cell.ljust(widths[i]) if i == 0 or i == 5 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if index == 0:
            lines.append("  " + "  ".join("-" * w for w in widths[:5]))
    return "\n".join(lines)


def targets(all_results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The targets of issues 5 and 14, checked against this run: one markdown bullet each."""
    lines = []
    for dataset, results in all_results.items():
        ok = {v: r for v, r in results.items() if "error" not in r}

        def ratio(a: str, b: str, *, results: dict[str, dict[str, Any]] = ok) -> float | None:
            if a in results and b in results:
                return rate(results[a]) / rate(results[b])
            return None

        checks = [
            ("iterator (e) >= 20x (b)", ratio("e", "b"), 20.0),
            ("iterator (e) >= 3x (c)", ratio("e", "c"), 3.0),
            ("async (f) >= 0.9x iterator (e)", ratio("f", "e"), 0.9),
            ("batches (g) >= 0.5x fetch limit (a)", ratio("g", "a"), 0.5),
            (
                "batches (g) >= 0.8x fetch limit without librdkafka's prefetch back-off (a+)",
                ratio("g", "a+"),
                0.8,
            ),
        ]
        for label, value, goal in checks:
            if value is None:
                lines.append(f"- {dataset}: {label}: not measured")
            else:
                verdict = "met" if value >= goal else f"missed ({value / goal:.0%} of the target)"
                lines.append(f"- {dataset}: {label}: {value:.2f}x, {verdict}")
        if "e" in ok:
            mb = ok["e"]["rss_kib"] / 1024
            verdict = "met" if mb < 300 else "missed"
            lines.append(
                f"- {dataset}: peak RSS of the iterator (e), {ok['e']['events']:,} events, "
                f"default settings < 300 MB: {mb:.0f} MB, {verdict}"
            )
    return lines


def markdown(
    all_results: dict[str, dict[str, dict[str, Any]]],
    *,
    events: int,
    repeat: int,
    info: dict[str, str],
    load: dict[str, str],
    command: str,
    busy: bool,
    latency: dict[str, Any] | None = None,
) -> str:
    parts = [
        "# Benchmark results",
        "",
        f"Written by `{command}`; see [README.md](README.md) for what each variant does.",
        f"{events:,} events per dataset, 6 partitions, the stack's single Kafka broker on loopback;"
        + (f" median of {repeat} runs per variant." if repeat > 1 else " one run per variant."),
        "events/s is measured from the first message received to the last one processed;"
        " the column after it includes connecting. x (b) is the ratio to"
        " confluent-kafka + AvroDeserializer. Peak RSS is the variant process's high-water"
        " mark (`VmHWM`, which is `ru_maxrss` without what Linux carries over from the parent"
        " across `exec`).",
        "",
    ]
    if busy:
        parts += [
            "**The machine was busy during this run** (the load average rose above the number of"
            " cores; see below): other work shared the CPUs, so the absolute figures are lower"
            " than on an idle machine.",
            "",
        ]
    for dataset, results in all_results.items():
        parts += [f"## {DATASET_TITLES[dataset]}", ""]
        parts.append("| " + " | ".join(HEADER[:5]) + " |")
        parts.append("|" + "|".join([":---", "---:", "---:", "---:", "---:"]) + "|")
        for row in rows(results):
            cells = row[:5]
            if row[5]:
                cells[1] = row[5]
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
    if latency is not None:
        parts += latency_markdown(latency)
    parts += ["## Targets (issues 5 and 14)", "", *targets(all_results)]
    if latency is not None:
        parts += latency_targets(latency)
    parts.append("")
    parts += ["## Machine", ""]
    parts += [f"- {key}: {value}" for key, value in info.items()]
    parts += [f"- {key}: {value}" for key, value in load.items()]
    parts.append("")
    return "\n".join(parts)


def chart(all_results: dict[str, dict[str, dict[str, Any]]], path: Path, subtitle: str) -> None:
    """A grouped bar chart: events/s per variant, one group per variant, one bar per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if any(v in r for r in all_results.values())]
    datasets = list(all_results)
    width = 0.8 / max(len(datasets), 1)
    colors = ["#4C72B0", "#DD8452", "#55A868"]
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    values_all = []
    for d_index, dataset in enumerate(datasets):
        xs, ys = [], []
        for v_index, variant in enumerate(variants):
            result = all_results[dataset].get(variant)
            if result is None or "error" in result:
                continue
            xs.append(v_index + (d_index - (len(datasets) - 1) / 2) * width)
            ys.append(rate(result))
        values_all += ys
        bars = ax.bar(xs, ys, width, label=DATASET_TITLES[dataset], color=colors[d_index % 3])
        for bar, y in zip(bars, ys, strict=True):
            label = f"{y / 1000:.0f}k" if y < 1e6 else f"{y / 1e6:.2f}M"
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, y),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    if values_all and max(values_all) / max(min(values_all), 1) > 20:
        ax.set_yscale("log")
        ax.set_ylabel("events/s (log scale)")
        ax.set_ylim(min(values_all) / 1.5, max(values_all) * 4)  # room for the legend
    else:
        ax.set_ylabel("events/s")
        ax.set_ylim(0, max(values_all, default=1) * 1.25)
    ax.set_xticks(range(len(variants)))
    labels = [f"({v})\n" + _wrap(CHART_LABELS.get(v, VARIANTS[v])) for v in variants]
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_title(f"Change events into Python, events/s (higher is better)\n{subtitle}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_axisbelow(True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# Shorter x-axis labels where the table's name does not wrap well.
CHART_LABELS = {"a+": "as (a), prefetch back-off 10 ms"}


def _wrap(text: str, width: int = 18) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Latency (latency.py)
# ---------------------------------------------------------------------------

LATENCY_HEADER = [
    "variant",
    "p50 ms",
    "p99 ms",
    "max ms",
    "p99 ms from the broker's append",
    "p99 ms of each run",
]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def latency_rows(record: dict[str, Any]) -> list[list[str]]:
    """One row per variant: the medians over its runs of p50, p99 and max, and each run's p99."""
    from latency import LATENCY_VARIANTS

    out = []
    for variant, runs in record["runs"].items():
        name = f"({variant}) {LATENCY_VARIANTS[variant]}"
        good = [r for r in runs if "error" not in r]
        if not good:
            error = runs[-1]["error"] if runs else "not run"
            out.append([name, f"failed: {error}", "-", "-", "-", "-"])
            continue
        out.append(
            [
                name,
                f"{_median([r['p50_ms'] for r in good]):.1f}",
                f"{_median([r['p99_ms'] for r in good]):.1f}",
                f"{_median([r['max_ms'] for r in good]):.1f}",
                f"{_median([r['from_append']['p99_ms'] for r in good]):.1f}",
                ", ".join(f"{r['p99_ms']:.1f}" for r in good),
            ]
        )
    return out


def scheduler_delay(record: dict[str, Any]) -> str | None:
    """How late a process sleeping 1 ms at a time woke up during the runs."""
    probes = [
        r["scheduler_delay"]
        for runs in record["runs"].values()
        for r in runs
        if "scheduler_delay" in r
    ]
    if not probes:
        return None
    p99 = _median([p["p99_ms"] for p in probes])
    worst = max(p["max_ms"] for p in probes)
    return (
        "Meanwhile a process that only sleeps 1 ms at a time woke up late by"
        f" {p99:.1f} ms at p99 (median over runs) and by up to {worst:.0f} ms: the wait for a"
        " CPU that every process of the pipeline (producer, broker, consumer) pays."
    )


def latency_method(record: dict[str, Any]) -> str:
    runs = record["repeat"]
    return (
        f"{record['rate']:,.0f} events/s for {record['seconds']:.0f} s into a new topic of"
        f" {record['partitions']} partitions (Debezium envelopes of the `orders` table, encoded"
        " with fastavro, produced by confluent-kafka with `linger.ms=0`); each event carries its"
        " send time, and each consumer, in a process of its own with its library's defaults,"
        " takes the time again once the decoded event is in Python (the same clock)."
        f" The first {record['warmup_s']:.0f} s are left out. The broker stamps each message"
        " with its append time (`LogAppendTime`, in ms): the part of the latency after it is"
        " the consumer's (plus the fetch round trip)."
        + (f" Median of {runs} runs per variant." if runs > 1 else " One run per variant.")
    )


def latency_targets(record: dict[str, Any]) -> list[str]:
    """Issue 14's latency target, checked against this run: one markdown bullet."""
    runs = [r for r in record["runs"].get("e", []) if "error" not in r]
    if not runs:
        return ["- latency: iterator (e) p99 < 20 ms: not measured"]
    p99 = _median([r["p99_ms"] for r in runs])
    verdict = "met" if p99 < 20 else "missed"
    rate = f"{record['rate']:,.0f} events/s"
    return [f"- latency: iterator (e) p99 < 20 ms at {rate}: {p99:.1f} ms, {verdict}"]


def latency_terminal_table(record: dict[str, Any]) -> str:
    table = [LATENCY_HEADER, *latency_rows(record)]
    widths = [max(len(row[i]) for row in table) for i in range(len(LATENCY_HEADER))]
    lines = [f"Latency, produce -> Python, {record['rate']:,.0f} events/s"]
    for index, row in enumerate(table):
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if index == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    delay = scheduler_delay(record)
    if delay:
        lines.append(delay)
    return "\n".join(lines)


LATENCY_TITLE = "## Latency, produce -> Python"


def latency_markdown(record: dict[str, Any]) -> list[str]:
    """The latency section of results.md: its title, method, table and the load it ran under."""
    loads = [r["load_1m"] for runs in record["runs"].values() for r in runs]
    parts = [
        f"{LATENCY_TITLE} ({record['rate']:,.0f} events/s)",
        "",
        latency_method(record),
        "",
        "| " + " | ".join(LATENCY_HEADER) + " |",
        "|" + "|".join([":---", *["---:"] * (len(LATENCY_HEADER) - 1)]) + "|",
    ]
    parts += ["| " + " | ".join(row) + " |" for row in latency_rows(record)]
    parts.append("")
    delay = scheduler_delay(record)
    if delay:
        parts += [delay, ""]
    if loads and max(loads) > (os.cpu_count() or 1):
        parts += [
            "**The machine was shared and busy during these runs** (the load average rose above"
            " the number of cores): the tails (p99, max) include waits for a CPU, in the"
            " consumers and in the producer and broker alike.",
            "",
        ]
    if loads:
        parts += [
            f"Written by `{record.get('command', 'benches/bench.py')}` on"
            f" {record.get('date', 'an unrecorded date')}; 1-min load average when each run"
            f" started: {min(loads):.2f} to {max(loads):.2f} on {os.cpu_count()} cores.",
            "",
        ]
    return parts


def replace_latency(text: str, record: dict[str, Any]) -> str:
    """``text`` (a results.md) with its latency section replaced by ``record``'s, or the
    section added before the targets when it has none."""
    section = "\n".join(latency_markdown(record))
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(LATENCY_TITLE)), None)
    if start is None:
        anchor = next(
            (i for i, line in enumerate(lines) if line.startswith("## Targets")), len(lines)
        )
        return "".join(lines[:anchor]) + section + "\n" + "".join(lines[anchor:])
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "".join(lines[:start]) + section + "\n" + "".join(lines[end:])
