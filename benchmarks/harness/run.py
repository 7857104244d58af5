"""The whole benchmark, in the order of the table it prints.

1. the dataset: >= 1,000,000 simulated help-desk and order events on the benchmark's
   own broker (127.0.0.1:19092, state in .kpi/bench/kafka), produced once and reused;
2. the ceiling: a plain aiokafka consumer over all of it, `runs` times;
3. the worker, `runs` times from a fresh consumer group and state directory: the first
   run over the whole dataset (its state is the 1,000,000 events' state), then /metrics
   is scraped and the worker is killed (-9) and restarted on that state `runs` times;
   the throughput of every run is over its first `throughput_events` messages;
4. the Quix Streams peer over the same first `throughput_events` messages, `runs` times;
5. freshness at half the worker's median rate, `runs` times, on a fresh worker and
   topics (a live feed, event time = now);
6. open tickets: `open_tickets` new tickets into a fresh worker, `runs` times.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.ceiling import measure_ceiling
from benchmarks.harness.dataset import ensure_dataset
from benchmarks.harness.freshness import measure_freshness
from benchmarks.harness.peer import ROOT, ensure_venv, run_quix
from benchmarks.harness.processes import WorkerProcess, worker_env
from benchmarks.harness.state import (
    measure_open_tickets,
    measure_recovery,
    measure_scrape,
    owned,
)
from benchmarks.harness.stats import Figure
from stream.local.broker import LocalBroker, create_topics
from stream.settings import Settings, TopicSpec


@dataclass(frozen=True)
class Options:
    events: int = 1_000_000
    throughput_events: int = 100_000
    runs: int = 3
    rate: float = 100.0  # simulated event time: mean events per second
    seed: int = 11
    partitions: int = 3
    open_tickets: int = 20_000
    freshness_seconds: float = 15.0
    broker_port: int = 19092
    web_port: int = 16066
    work_dir: Path = ROOT / ".kpi" / "bench"
    peer_venv: Path = ROOT / ".kpi" / "bench-venv"  # Quix Streams' own virtualenv
    peer: bool = True
    fresh: bool = False
    profile_to: Path | None = None  # a pyinstrument report of one more worker run


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class Bench:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.work = options.work_dir
        self.runs_dir = self.work / "runs"
        self.broker = LocalBroker(
            port=options.broker_port,
            controller_port=options.broker_port + 1,
            state_dir=self.work / "kafka",
        )
        self.counter = 0
        self.started = time.monotonic()

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def run_name(self, what: str) -> str:
        self.counter += 1
        return f"b{int(time.time())}-{what}{self.counter}"

    @contextlib.contextmanager
    def worker(
        self, what: str, helpdesk: str, orders: str, **extra: str
    ) -> Iterator[WorkerProcess]:
        run = self.run_name(what)
        data = self.runs_dir / run
        data.mkdir(parents=True, exist_ok=True)
        env = worker_env(run, self.bootstrap, helpdesk, orders, data / "state", self.o.web_port)
        env.update(extra)
        worker = WorkerProcess.start(env, data / "worker.log")
        try:
            yield worker
        finally:
            worker.kill()
            shutil.rmtree(data / "state", ignore_errors=True)

    def fresh_topics(self, what: str) -> tuple[str, str]:
        run = self.run_name(what)
        helpdesk, orders = f"{run}.helpdesk.events", f"{run}.orders.events"
        create_topics(
            self.bootstrap,
            [TopicSpec(helpdesk, self.o.partitions), TopicSpec(orders, self.o.partitions)],
        )
        return helpdesk, orders

    def run(self) -> dict[str, Any]:
        o = self.o
        if o.fresh:
            self.broker.down()
            shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.runs_dir, ignore_errors=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        say(f"broker on {self.bootstrap} (state {self.broker.state_dir})")
        self.broker.up()
        try:
            return self._run()
        finally:
            self.broker.down()

    def _run(self) -> dict[str, Any]:
        o = self.o
        t = time.monotonic()
        dataset = ensure_dataset(
            self.bootstrap,
            self.work / "dataset.json",
            count=o.events,
            rate=o.rate,
            seed=o.seed,
            partitions=o.partitions,
        )
        say(
            f"dataset: {dataset.messages:,} messages ({dataset.helpdesk_messages:,} help desk, "
            f"{dataset.order_messages:,} orders), {dataset.event_span_hours:.1f} h of event "
            f"time ({time.monotonic() - t:.0f} s)"
        )
        topics = (dataset.helpdesk_topic, dataset.orders_topic)
        n = min(o.throughput_events, dataset.messages)
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "dataset": asdict(dataset),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()},
            "throughput_events": n,
            # Producing the dataset (once; later runs reuse it) is not in the bench's time.
            "dataset_seconds": time.monotonic() - t,
        }

        ceiling = []
        for i in range(o.runs):
            c = measure_ceiling(self.bootstrap, list(topics), dataset.messages)
            ceiling.append(c.events_per_second)
            say(f"ceiling run {i + 1}: {c.events_per_second:,.0f} events/s")
        results["ceiling_events_per_second"] = Figure.of(ceiling).as_json()

        worker_rates, recovery, scrape, scrape_bytes = [], [], [], 0
        full: dict[str, Any] = {}
        interval_s = Settings().web_render_interval_seconds
        for i in range(o.runs):
            whole = i == 0
            with self.worker("worker", *topics) as w:
                at_n = w.wait_handled(topics, n, timeout_s=1800)
                worker_rates.append(at_n.events_per_second)
                say(f"worker run {i + 1}: {worker_rates[-1]:,.0f} events/s over {n:,}")
                if whole:
                    whole_run = w.wait_handled(topics, dataset.messages, timeout_s=3600, since=at_n)
                    rss = w.rss_bytes()
                    # The customer activities and window partials it wrote itself may be
                    # behind still (Faust reads the inputs first): every KPI is computed
                    # once they are read too.
                    drain_s, backlog = w.wait_drained(topics, timeout_s=1800)
                    counted = whole_run.last_count - whole_run.first_count
                    full = {
                        "events_per_second": whole_run.events_per_second,
                        "rss_bytes": rss,
                        "internal_backlog_records": backlog,
                        "drain_seconds": drain_s,
                        # The same messages, up to the last record of its own topics.
                        "all_processed_events_per_second": counted / (whole_run.seconds + drain_s),
                    }
                    say(
                        f"worker: all {dataset.messages:,} in {whole_run.seconds:.0f} s "
                        f"({full['events_per_second']:,.0f}/s), RSS {rss / 2**20:,.0f} MiB; "
                        f"its own topics {sum(backlog.values()):,} records behind, read "
                        f"{drain_s:.0f} s later ({full['all_processed_events_per_second']:,.0f}"
                        " events/s with everything processed)"
                    )
                    expected_owned = owned(w.metrics_text())
                    # Scraped with the whole state and the counters of the whole run; a
                    # restarted worker shows fewer series until new events arrive.
                    for _ in range(o.runs):
                        s = measure_scrape(w, interval_s)
                        scrape.append(s.median_s)
                        scrape_bytes = s.body_bytes
                    say(f"scrape {Figure.of(scrape).median * 1000:.1f} ms ({scrape_bytes:,} bytes)")
                    restarted: list[WorkerProcess] = []
                    try:
                        for j in range(o.runs):
                            w, seconds = measure_recovery(w, expected_owned)
                            restarted.append(w)
                            recovery.append(seconds)
                            say(f"kill -9 and recovery {j + 1}: {seconds:.1f} s")
                        full["rss_after_recovery_bytes"] = w.rss_bytes()
                    finally:
                        for process in restarted:
                            process.kill()
        results["worker_events_per_second"] = Figure.of(worker_rates).as_json()
        results["worker_full_run"] = full
        results["scrape_seconds"] = Figure.of(scrape).as_json()
        results["scrape_bytes"] = scrape_bytes
        results["recovery_seconds"] = Figure.of(recovery).as_json()

        if o.peer:
            python = ensure_venv(o.peer_venv)
            quix = []
            for i in range(o.runs):
                run = self.run_name("quix")
                data = self.runs_dir / run
                data.mkdir(parents=True, exist_ok=True)
                p = run_quix(
                    python, self.bootstrap, list(topics), n, run, data / "state", data / "quix.log"
                )
                quix.append(p.events_per_second)
                say(f"quix run {i + 1}: {p.events_per_second:,.0f} events/s over {p.messages:,}")
                shutil.rmtree(data / "state", ignore_errors=True)
            results["quix_events_per_second"] = Figure.of(quix).as_json()

        rate = Figure.of(worker_rates).median / 2
        p50, p99, sent, caught_up = [], [], [], []
        for i in range(o.runs):
            helpdesk, orders = self.fresh_topics("fresh")
            with self.worker("fresh", helpdesk, orders, KPI_LIVE="true") as w:
                f = measure_freshness(
                    w, self.bootstrap, helpdesk, orders, rate, o.freshness_seconds
                )
            p50.append(f.quantile(0.5))
            p99.append(f.quantile(0.99))
            sent.append(f.sent_per_second)
            caught_up.append(f.caught_up)
            say(
                f"freshness run {i + 1} at {f.sent_per_second:,.0f} events/s: p50 "
                f"{p50[-1] * 1000:.0f} ms, p99 {p99[-1] * 1000:.0f} ms ({f.probes} probes, "
                f"measured from {f.warmup_s:.0f} s"
                + (")" if f.caught_up else "; the worker never caught up with its start)")
            )
        results["freshness"] = {
            "rate_per_second": rate,
            "sent_per_second": Figure.of(sent).as_json(),
            "p50_seconds": Figure.of(p50).as_json(),
            "p99_seconds": Figure.of(p99).as_json(),
            # False: that run's worker never caught up with the feed's start (slower
            # than the rate), so its figure includes the backlog of its start.
            "caught_up": caught_up,
        }

        per_100k, stored = [], []
        for i in range(o.runs):
            helpdesk, orders = self.fresh_topics("open")
            with self.worker("open", helpdesk, orders) as w:
                app_id = w.env["KPI_APP_ID"]
                r = measure_open_tickets(
                    w,
                    self.bootstrap,
                    helpdesk,
                    f"{app_id}-tickets-changelog",
                    o.open_tickets,
                    app_id,
                )
            per_100k.append(r.rss_per_100k_bytes)
            stored.append(r.stored_bytes_per_ticket)
            say(
                f"open tickets run {i + 1}: RSS +{r.rss_per_100k_bytes / 2**20:,.1f} MiB per "
                f"100,000, {r.stored_bytes_per_ticket:,.0f} stored bytes per ticket"
            )
        results["rss_per_100k_open_tickets_bytes"] = Figure.of(per_100k).as_json()
        results["stored_bytes_per_open_ticket"] = Figure.of(stored).as_json()
        if o.profile_to is not None:
            self.profile(topics, n, o.profile_to)
        results["seconds"] = time.monotonic() - self.started
        return results

    def profile(self, topics: tuple[str, str], n: int, path: Path) -> None:
        """One more worker run, under pyinstrument, stopped once it has handled `n`."""
        run = self.run_name("profile")
        data = self.runs_dir / run
        data.mkdir(parents=True, exist_ok=True)
        env = worker_env(run, self.bootstrap, *topics, data / "state", self.o.web_port)
        path.parent.mkdir(parents=True, exist_ok=True)
        w = WorkerProcess.start(env, data / "worker.log", profile_to=path.resolve())
        try:
            w.wait_handled(topics, n, timeout_s=3600)
            w.interrupt()
        finally:
            w.kill()
            shutil.rmtree(data / "state", ignore_errors=True)
        say(f"profile of a worker over {n:,} events: {path}")


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))
