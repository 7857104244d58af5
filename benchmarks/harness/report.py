"""The benchmark's table (printed), its JSON file and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The targets of the benchmark (docs/performance.md): (figure, test, text).
TARGETS = {
    "worker_vs_quix": (2.0, ">=", "worker / Quix Streams >= 2"),
    "worker_vs_ceiling": (0.15, ">=", "worker / raw ceiling >= 0.15"),
    "freshness_p99_seconds": (1.0, "<", "freshness p99 < 1 s"),
    "stored_bytes_per_open_ticket": (1024.0, "<=", "stored state per open ticket <= 1 KiB"),
    "scrape_seconds": (0.05, "<", "/metrics scrape < 50 ms"),
    "bench_seconds": (900.0, "<", "the whole benchmark < 15 min"),
}


def _m(figure: dict[str, Any] | None) -> float:
    return float(figure["median"]) if figure else float("nan")


def derived(results: dict[str, Any]) -> dict[str, float]:
    """The ratios and the figures the targets are about."""
    worker = _m(results["worker_events_per_second"])
    quix = results.get("quix_events_per_second")
    return {
        "worker_vs_ceiling": worker / _m(results["ceiling_events_per_second"]),
        "worker_vs_quix": worker / _m(quix) if quix else float("nan"),
        "freshness_p99_seconds": _m(results["freshness"]["p99_seconds"]),
        "stored_bytes_per_open_ticket": _m(results["stored_bytes_per_open_ticket"]),
        "scrape_seconds": _m(results["scrape_seconds"]),
        # The dataset is produced once and reused: the bench's own time is without it.
        "bench_seconds": float(results.get("seconds", float("nan")))
        - float(results.get("dataset_seconds", 0.0)),
    }


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    values = derived(results)
    out = {}
    for name, (target, test, _text) in TARGETS.items():
        value = values[name]
        out[name] = {">=": value >= target, "<": value < target, "<=": value <= target}[test]
    return out


def _range(figure: dict[str, Any], scale: float = 1.0, digits: int = 0) -> str:
    fmt = f"{{:,.{digits}f}}"
    return (
        f"{fmt.format(figure['median'] * scale)} "
        f"({fmt.format(figure['min'] * scale)}-{fmt.format(figure['max'] * scale)})"
    )


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per figure, median (min-max) over the runs."""
    d = derived(results)
    ok = verdicts(results)
    mark = {True: "met", False: "**missed**"}
    rows = [
        (
            "raw ceiling (aiokafka fetch + orjson decode)",
            "events/s",
            _range(results["ceiling_events_per_second"]),
            "",
        ),
        (
            "kpi-stream worker, every KPI",
            "events/s",
            _range(results["worker_events_per_second"]),
            "",
        ),
    ]
    if results.get("quix_events_per_second"):
        rows.append(
            (
                "Quix Streams peer (3 KPIs)",
                "events/s",
                _range(results["quix_events_per_second"]),
                "",
            )
        )
        rows.append(
            (
                "worker / Quix",
                "ratio",
                f"{d['worker_vs_quix']:.2f}",
                mark[ok["worker_vs_quix"]] + " (>= 2)",
            )
        )
    rows += [
        (
            "worker / ceiling",
            "ratio",
            f"{d['worker_vs_ceiling']:.3f}",
            mark[ok["worker_vs_ceiling"]] + " (>= 0.15)",
        ),
        (
            "freshness p50 at half the worker's rate",
            "ms",
            _range(results["freshness"]["p50_seconds"], 1000),
            "",
        ),
        (
            "freshness p99 at half the worker's rate",
            "ms",
            _range(results["freshness"]["p99_seconds"], 1000),
            mark[ok["freshness_p99_seconds"]] + " (< 1,000)",
        ),
        (
            "RSS per 100,000 open tickets",
            "MiB",
            _range(results["rss_per_100k_open_tickets_bytes"], 1 / 2**20, 1),
            "",
        ),
        (
            "stored state per open ticket",
            "bytes",
            _range(results["stored_bytes_per_open_ticket"]),
            mark[ok["stored_bytes_per_open_ticket"]] + " (<= 1,024)",
        ),
        (
            f"recovery after kill -9 ({results['dataset']['messages']:,} events of state)",
            "s",
            _range(results["recovery_seconds"], 1, 1),
            "",
        ),
        (
            "/metrics scrape",
            "ms",
            _range(results["scrape_seconds"], 1000, 1),
            mark[ok["scrape_seconds"]] + " (< 50)",
        ),
    ]
    full = results.get("worker_full_run") or {}
    if "all_processed_events_per_second" in full:
        rows.insert(
            2,
            (
                f"worker over all {results['dataset']['messages']:,}, its own topics "
                "(customer activity, partials) read to the end too (1 run)",
                "events/s",
                f"{full['all_processed_events_per_second']:,.0f}",
                "",
            ),
        )
    rows.append(
        (
            "the whole benchmark (its dataset in place)",
            "min",
            f"{d['bench_seconds'] / 60:.1f}",
            mark[ok["bench_seconds"]] + " (< 15)",
        )
    )
    lines = ["| figure | unit | median (min-max) | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {t} |" for a, b, c, t in rows]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Two panels: throughput of the three consumers (log scale), freshness quantiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = ["raw ceiling", "kpi-stream worker"]
    figures = [results["ceiling_events_per_second"], results["worker_events_per_second"]]
    if results.get("quix_events_per_second"):
        names.append("Quix Streams")
        figures.append(results["quix_events_per_second"])
    medians = [f["median"] for f in figures]
    errors = [[f["median"] - f["min"] for f in figures], [f["max"] - f["median"] for f in figures]]
    bars = left.bar(
        names,
        medians,
        yerr=errors,
        capsize=4,
        color=["#9e9e9e", "#1f77b4", "#ff7f0e"][: len(names)],
    )
    left.set_yscale("log")
    left.set_ylabel("events/s (log scale)")
    left.set_title(f"Throughput, {results['throughput_events']:,} events")
    for bar, value in zip(bars, medians, strict=True):
        left.annotate(
            f"{value:,.0f}",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=9,
            xytext=(0, 3),
            textcoords="offset points",
        )
    fresh = results["freshness"]
    qs = ["p50", "p99"]
    values = [fresh["p50_seconds"]["median"] * 1000, fresh["p99_seconds"]["median"] * 1000]
    right.bar(qs, values, color="#1f77b4")
    right.axhline(1000, color="#d62728", linestyle="--", label="target p99 < 1 s")
    right.set_ylabel("ms from produce to /metrics")
    right.set_title(f"Freshness at {fresh['sent_per_second']['median']:,.0f} events/s")
    right.legend(loc="upper left")
    for i, value in enumerate(values):
        right.annotate(
            f"{value:,.0f} ms",
            (i, value),
            ha="center",
            va="bottom",
            fontsize=9,
            xytext=(0, 3),
            textcoords="offset points",
        )
    machine = results["machine"]
    fig.suptitle(
        f"kpi bench, {results['date'][:10]}, {machine['cores']} cores, {machine['cpu']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
