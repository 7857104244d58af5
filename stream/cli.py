"""The `kpi` command: worker, simulator, local broker and the one-command demo."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console

from stream.kpi.events import PRIORITIES
from stream.kpi.timefmt import parse_rfc3339_ms
from stream.kpi.windows import parse_duration_ms
from stream.local.broker_cli import kafka_app
from stream.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="kpi-stream: real-time customer-service KPIs from help-desk and order events.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(kafka_app, name="kafka")
console = Console(stderr=True)


def _settings() -> Settings:
    from rich.markup import escape

    from stream.kafka_security import check

    try:
        settings = load_settings()
        check(settings)  # loads the TLS files: a bad one is named here, not in a client
    except SettingsError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    return settings


def _check_kafka(settings: Settings) -> None:
    """Exit 1 with the reason unless a bootstrap server accepts the connection and the
    credentials: clients that cannot bootstrap say only that (kafka-python after its
    timeout), not that the password or the certificate was refused."""
    from rich.markup import escape

    from stream.kafka_security import KafkaConnectError, check_connection

    try:
        check_connection(settings)
    except KafkaConnectError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(1) from None


def _kafka_options(settings: Settings) -> dict[str, Any]:
    """The security arguments of the command's kafka-python client, once checked."""
    from stream.kafka_security import kafka_python_options

    _check_kafka(settings)
    return kafka_python_options(settings)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="crit, error, warn, info or debug")] = "info",
) -> None:
    """Run the Faust worker: consume events, keep KPI tables, serve /metrics."""
    from stream.worker import Worker

    settings = _settings()
    # Faust exits too when it cannot bootstrap at start, with a traceback.
    _check_kafka(settings)
    if settings.event_loop == "uvloop":
        import mode.loop

        # Before the worker is built: every loop it asks for is then a uvloop loop.
        mode.loop.use("uvloop")
    Worker(settings).run(loglevel=loglevel)


@app.command()
def simulate(
    rate: Annotated[float, typer.Option(help="mean events per second (help desk + orders)")] = 20.0,
    seed: Annotated[int, typer.Option(help="same seed, same stream")] = 42,
    duration: Annotated[
        str | None,
        typer.Option(help="event-time span to generate, e.g. 10m, 2h, 7d; none = endless"),
    ] = None,
    start: Annotated[
        str, typer.Option(help="event time of the first event: 'now' or RFC 3339")
    ] = "now",
    to: Annotated[str, typer.Option(help="'kafka' or a .jsonl file path")] = "kafka",
    pace: Annotated[
        bool, typer.Option(help="send each event when the wall clock reaches its time")
    ] = True,
    time_scale: Annotated[
        float, typer.Option(help="multiplies delays inside a ticket's life (0.01: 1 h -> 36 s)")
    ] = 1.0,
    duplicates: Annotated[float, typer.Option(help="share of events sent twice")] = 0.0,
    malformed: Annotated[float, typer.Option(help="share of extra broken messages")] = 0.0,
    late: Annotated[float, typer.Option(help="share of events sent late")] = 0.0,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many")] = None,
) -> None:
    """Produce realistic, seeded help-desk and order traffic to Kafka or a JSONL file."""
    from stream.local.feed import feed_to_file, feed_to_kafka
    from stream.local.simulator import SimConfig
    from stream.local.simulator import simulate as generate

    settings = _settings()
    start_ms = int(time.time() * 1000) if start == "now" else parse_rfc3339_ms(start)
    config = SimConfig.for_rate(
        rate,
        seed=seed,
        start_ms=start_ms,
        duration_ms=parse_duration_ms(duration) if duration else None,
        time_scale=time_scale,
        duplicate_share=duplicates,
        malformed_share=malformed,
        late_share=late,
    )
    messages = generate(config)
    if to == "kafka":
        stats = feed_to_kafka(
            messages,
            settings.bootstrap_servers,
            {"helpdesk": settings.helpdesk_topic, "orders": settings.orders_topic},
            pace=pace,
            max_messages=max_messages,
            progress=sys.stderr.isatty(),
            client_options=_kafka_options(settings),
        )
    else:
        stats = feed_to_file(messages, Path(to), max_messages=max_messages)
    console.print(f"sent {stats.sent} messages in {stats.seconds:.1f} s: {stats.by_kind}")


@app.command()
def replay(
    path: Annotated[
        Path,
        typer.Argument(
            help="JSONL or JSONL.gz (simulator lines or bare events), or CSV or CSV.gz with --map"
        ),
    ],
    speed: Annotated[
        float | None,
        typer.Option(help="replay N times faster than the events happened; default: at once"),
    ] = None,
    column_map: Annotated[
        Path | None,
        typer.Option(
            "--map", help="column map (TOML) turning CSV rows into events, see docs/replay.md"
        ),
    ] = None,
    sort: Annotated[
        bool,
        typer.Option("--sort", help="CSV: send the events ordered by occurred_at, not file order"),
    ] = False,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many")] = None,
) -> None:
    """Replay a file of events into Kafka, with a progress line."""
    from collections import Counter

    from stream.local.csvmap import ConvertStats, MapError, is_csv_path, load_map
    from stream.local.feed import feed_to_kafka
    from stream.local.replay import count_rejections, read_csv_messages, read_messages

    settings = _settings()
    if not path.is_file():
        console.print(f"[red]no such file: {path}[/red]")
        raise typer.Exit(2)
    csv_file = is_csv_path(path)
    if csv_file and column_map is None:
        console.print(
            f"[red]{path} is a CSV file: --map MAP.toml is required (a column map that turns "
            "its rows into events; see docs/replay.md)[/red]"
        )
        raise typer.Exit(2)
    if not csv_file and (column_map is not None or sort):
        flag = "--map" if column_map is not None else "--sort"
        console.print(
            f"[red]{flag} is for CSV files (.csv, .csv.gz); {path} is replayed as JSON Lines, "
            "in file order[/red]"
        )
        raise typer.Exit(2)
    client_options = _kafka_options(settings)
    stats = ConvertStats()
    rejected: Counter[str] = Counter()
    start_ms = int(time.time() * 1000)
    try:
        if column_map is not None:
            messages = count_rejections(
                read_csv_messages(
                    path, load_map(column_map), speed, start_ms, sort=sort, stats=stats
                ),
                rejected,
            )
        else:
            messages = read_messages(path, speed, start_ms)
        stats_sent = feed_to_kafka(
            messages,
            settings.bootstrap_servers,
            {
                "helpdesk": settings.helpdesk_topic,
                "orders": settings.orders_topic,
                "indicators": settings.indicators_topic,
            },
            pace=speed is not None,
            max_messages=max_messages,
            progress=sys.stderr.isatty(),
            client_options=client_options,
        )
    except (MapError, UnicodeDecodeError, csv.Error) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if column_map is not None:
        console.print(stats.summary(), markup=False, highlight=False, soft_wrap=True)
        if rejected:
            console.print(
                f"[yellow]{sum(rejected.values())} events the worker will dead-letter: "
                f"{dict(rejected)}[/yellow]"
            )
    rate = stats_sent.sent / stats_sent.seconds if stats_sent.seconds else float("inf")
    console.print(
        f"replayed {stats_sent.sent} messages in {stats_sent.seconds:.1f} s ({rate:,.0f}/s): "
        f"{stats_sent.by_topic}; failed sends: {stats_sent.failed}"
    )
    if stats_sent.failed:
        raise typer.Exit(1)


indicator_app = typer.Typer(
    help="External indicators (topic indicators.external): report a value by hand.",
    no_args_is_help=True,
)
# One line per paragraph: the help keeps a paragraph's line breaks, so a docstring's
# breaks would land in the middle of the terminal's lines.
_INDICATOR_SET_HELP = "\n\n".join(
    (
        "Send one indicator.reported event, keyed by NAME, to the indicators topic.",
        "The period is --period-start and --period-end (RFC 3339 with an offset), or "
        "--period 2026-11 (a calendar month) or --period 2026-Q4 (a quarter), in UTC. "
        "The event is checked with the worker's own schema validator and period rule "
        "first: a report the worker would dead-letter is refused (exit 2), nothing sent. "
        "Sending the same NAME and period again is a correction: the newer report wins "
        "and the KPI message's revision goes up by one.",
        "Example: kpi indicator set employee_turnover 0.042 --unit ratio --period 2026-11 "
        "--source 'HR system'",
    )
)
app.add_typer(indicator_app, name="indicator")


@indicator_app.command(
    "set",
    help=_INDICATOR_SET_HELP,
    # A negative VALUE (cash flow: -1200) is a value, not an unknown option.
    context_settings={"ignore_unknown_options": True},
)
def indicator_set(
    name: Annotated[str, typer.Argument(help="the indicator, e.g. employee_turnover")],
    value: Annotated[str, typer.Argument(help="a number: 0.042, 1200, -3.5")],
    unit: Annotated[str, typer.Option(help="e.g. ratio, EUR, customers")],
    period_start: Annotated[
        str | None, typer.Option(help="RFC 3339 start of the period, e.g. 2026-11-01T00:00:00Z")
    ] = None,
    period_end: Annotated[
        str | None, typer.Option(help="RFC 3339 end of the period (exclusive)")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="shortcut for both bounds: a calendar month (2026-11) or quarter (2026-Q4), UTC"
        ),
    ] = None,
    source: Annotated[str, typer.Option(help="who reports it, e.g. 'HR system'")] = "cli",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check and print the event, send nothing")
    ] = False,
) -> None:
    """Send one indicator.reported event (the help is _INDICATOR_SET_HELP)."""
    from rich.markup import escape

    from stream.codec import INDICATOR_TYPES, Decoder
    from stream.local.indicator_event import (
        IndicatorInputError,
        build_indicator_event,
        checked_message,
    )

    settings = _settings()
    try:
        event = build_indicator_event(
            name,
            value,
            unit,
            now_ms=int(time.time() * 1000),
            period=period,
            period_start=period_start,
            period_end=period_end,
            source=source,
        )
        decoder = Decoder(INDICATOR_TYPES, max_message_bytes=settings.max_message_bytes)
        message = checked_message(event, decoder)
    except IndicatorInputError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    topic = settings.indicators_topic
    line = f"{topic} key={name}: {message.value.decode()}"
    if dry_run:
        typer.echo(f"would send to {line}")
        return
    _send_indicator(settings, message.key, message.value)
    typer.echo(f"sent to {line}")


def _send_indicator(settings: Settings, key: bytes, value: bytes) -> None:
    """One message through the feed's producer (flushed before this returns)."""
    from kafka.errors import KafkaError

    from stream.local.feed import feed_to_kafka
    from stream.local.simulator import SimMessage

    topic = settings.indicators_topic
    message = SimMessage(cast(Any, "indicators"), key, value, 0, 0, "event")
    client_options = _kafka_options(settings)
    try:
        stats = feed_to_kafka(
            [message],
            settings.bootstrap_servers,
            {"indicators": topic},
            pace=False,
            client_options=client_options,
        )
    except KafkaError as exc:
        console.print(f"[red]could not send to {settings.bootstrap_servers}: {exc}[/red]")
        raise typer.Exit(1) from None
    if stats.failed:
        console.print(f"[red]Kafka did not accept the message for {topic}[/red]")
        raise typer.Exit(1)


@app.command()
def report(
    kpi: Annotated[str | None, typer.Option(help="only this KPI, e.g. first_response_time")] = None,
    window: Annotated[str | None, typer.Option(help="only this window size, e.g. 1h")] = None,
    output: Annotated[str, typer.Option("--format", help="table, jsonl or csv")] = "table",
) -> None:
    """Print the closed windows on the KPI topic (the latest message of each key)."""
    from stream.report import as_csv, as_jsonl, as_table, read_kpi_topic, rows

    if output not in ("table", "jsonl", "csv"):
        console.print(f"[red]--format {output!r} is not one of table, jsonl, csv[/red]")
        raise typer.Exit(2)
    settings = _settings()
    client_options = _kafka_options(settings)
    try:
        messages = read_kpi_topic(
            settings.bootstrap_servers,
            settings.kpi_topic,
            timeout_s=300,
            client_options=client_options,
        )
    except TimeoutError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    table = rows(messages.values(), kpi, window)
    if output == "csv":
        sys.stdout.write(as_csv(table))
    elif output == "jsonl":
        sys.stdout.write(as_jsonl(table))
    else:
        Console().print(as_table(table))


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="mean simulated events per second")] = 20.0,
    time_scale: Annotated[
        float, typer.Option(help="speed of ticket lives: 0.01 turns hours into tens of seconds")
    ] = 0.01,
    port: Annotated[int, typer.Option(help="local broker port")] = 9092,
) -> None:
    """The main job: local Kafka broker, topics, worker, a realistic feed. Ctrl-C stops all."""
    from stream.local.broker import BrokerError, LocalBroker, create_topics
    from stream.local.feed import feed_to_kafka
    from stream.local.simulator import SimConfig
    from stream.local.simulator import simulate as generate

    os.environ.setdefault("KPI_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    # A demo starts from nothing each time: keep its tables in memory.
    os.environ.setdefault("KPI_STORE", "memory://")
    # The demo's feed is never more than seconds late, so a one-minute grace lets the
    # window gauges show up within two minutes (the product default is 10 minutes).
    os.environ.setdefault("KPI_GRACE", "1m")
    # Tickets live `time_scale` times as long as real ones: scale the SLA targets alike,
    # so the breach and at-risk gauges show what they would on a real day.
    scaled = ",".join(
        f"{priority}={max(1, round(hours * 3_600_000 * time_scale))}ms"
        for priority, hours in (("urgent", 1), ("high", 4), ("normal", 24), ("low", 48))
    )
    os.environ.setdefault("KPI_SLA_FIRST_RESPONSE", scaled)
    os.environ.setdefault(
        "KPI_SLA_RESOLUTION",
        ",".join(f"{p}={round(48 * 3_600_000 * time_scale)}ms" for p in PRIORITIES),
    )
    os.environ.setdefault("KPI_SLA_WARN", f"{max(1, round(15 * 60_000 * time_scale))}ms")
    settings = _settings()
    # Ctrl-C and a plain `kill` both end in the same orderly stop below, also when the
    # demo was started from a script that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    broker = LocalBroker(port=port)
    was_running = broker.status().running
    console.print(f"[bold]kpi-stream demo[/bold]: starting the Kafka broker on {broker.bootstrap}")
    try:
        broker.up()
        create_topics(broker.bootstrap, settings.topic_specs())
    except BrokerError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None

    log_dir = Path(".kpi")
    log_dir.mkdir(exist_ok=True)
    worker_log = (log_dir / "worker.log").open("ab")
    worker_proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warn"],
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "KPI_BOOTSTRAP_SERVERS": broker.bootstrap},
    )
    stop = threading.Event()
    start_ms = int(time.time() * 1000)
    config = SimConfig.for_rate(
        rate,
        # A new seed per run: the broker keeps its data between demos, and the same
        # seed would replay the same event ids, which the worker rightly drops.
        seed=start_ms,
        start_ms=start_ms,
        time_scale=time_scale,
        duplicate_share=0.01,
        malformed_share=0.002,
        late_share=0.01,
    )
    feeder = threading.Thread(
        target=feed_to_kafka,
        args=(
            generate(config),
            broker.bootstrap,
            {"helpdesk": settings.helpdesk_topic, "orders": settings.orders_topic},
        ),
        kwargs={"pace": True, "stop": stop},
        name="simulator",
        daemon=True,
    )
    feeder.start()
    metrics_url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    console.print(
        f"worker pid {worker_proc.pid} (log .kpi/worker.log); simulator at {rate:g} events/s\n"
        f"  metrics:  {metrics_url}\n"
        f"  KPIs:     http://{settings.web_host}:{settings.web_port}/kpis\n"
        f"  broker:   {broker.bootstrap} (log {broker.status().log_path})\n"
        "Ctrl-C stops everything this command started."
    )
    try:
        _wait_for_metrics(metrics_url, worker_proc)
        console.print("[green]ready[/green]: tickets are being counted; watch the metrics URL")
        while worker_proc.poll() is None:
            time.sleep(1)
        console.print(
            f"[red]the worker exited with {worker_proc.returncode}[/red]; see .kpi/worker.log"
        )
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        stop.set()
        feeder.join(timeout=10)
        if worker_proc.poll() is None:
            worker_proc.send_signal(signal.SIGTERM)
            try:
                worker_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker_proc.kill()
                worker_proc.wait()
        worker_log.close()
        if not was_running:
            broker.down()
        console.print("stopped")


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="messages in the pre-loaded topics")] = 1_000_000,
    throughput_events: Annotated[
        int, typer.Option(help="messages each throughput run is measured over")
    ] = 100_000,
    runs: Annotated[int, typer.Option(help="runs per figure (median, min, max)")] = 3,
    open_tickets: Annotated[int, typer.Option(help="new tickets per memory run")] = 20_000,
    freshness_seconds: Annotated[float, typer.Option(help="length of a freshness run")] = 15.0,
    output: Annotated[Path, typer.Option(help="the figures, as JSON")] = Path(
        "benchmarks/results/latest.json"
    ),
    plot: Annotated[Path | None, typer.Option(help="throughput and freshness, as PNG")] = Path(
        "docs/images/benchmark.png"
    ),
    peer: Annotated[bool, typer.Option(help="run the Quix Streams peer")] = True,
    profile: Annotated[
        Path | None, typer.Option(help="also profile one worker run (pyinstrument text report)")
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="new broker state: produce the dataset again")
    ] = False,
    work_dir: Annotated[
        Path, typer.Option(help="the benchmark broker's state, the dataset and the runs")
    ] = Path(".kpi/bench"),
    port: Annotated[int, typer.Option(help="the benchmark broker's port (and port + 1)")] = 19092,
    web_port: Annotated[int, typer.Option(help="the workers' web port")] = 16066,
) -> None:
    """Measure the worker against the raw consumer ceiling and Quix Streams (docs/performance.md).

    Runs from a source checkout: it starts its own broker on 127.0.0.1:19092."""
    import json

    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "harness").is_dir():
        console.print("[red]kpi bench runs from a source checkout (benchmarks/ is not here)[/red]")
        raise typer.Exit(2)
    sys.path.insert(0, str(root))
    from benchmarks.harness.report import plot as draw
    from benchmarks.harness.report import table
    from benchmarks.harness.run import Bench, Options

    options = Options(
        events=events,
        throughput_events=throughput_events,
        runs=runs,
        open_tickets=open_tickets,
        freshness_seconds=freshness_seconds,
        peer=peer,
        fresh=fresh,
        profile_to=profile,
        work_dir=work_dir.resolve(),
        broker_port=port,
        web_port=web_port,
    )
    results = Bench(options).run()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    if plot is not None:
        draw(results, plot)
    print(table(results), flush=True)  # stdout, Markdown: pasted into docs/performance.md
    console.print(
        f"{results['seconds']:.0f} s; figures in {output}" + (f", plot {plot}" if plot else "")
    )


def _wait_for_metrics(
    url: str, worker_proc: subprocess.Popen[bytes], timeout_s: float = 180
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker_proc.poll() is None:
        text = ""
        # OSError: not listening yet.
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
        if any(
            line.startswith("kpistream_tickets_active{") and not line.endswith(" 0.0")
            for line in text.splitlines()
        ):
            return
        time.sleep(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
