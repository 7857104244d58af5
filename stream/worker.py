"""Builds the worker from settings (app, topics, tables, agents, pages) and runs it."""

from __future__ import annotations

import gc

import faust
from aiokafka.client import AIOKafkaClient
from prometheus_client import CollectorRegistry

from stream.agents import register_agents
from stream.app import make_app
from stream.export.broker_health import BrokerHealth, BrokerHealthCollector, probe_forever
from stream.export.kpi_feed import KpiTopicFeed
from stream.export.metrics import WindowStoreCollector
from stream.export.status import HISTORY_INTERVAL_MS, StatusHistory
from stream.export.web import register_pages, sample_status
from stream.export.window_store import WindowStore
from stream.kafka_security import aiokafka_options
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from stream.tables import Tables, declare_tables
from stream.topics import Topics, declare_topics


class Worker:
    """Everything one worker process is made of, built from one settings object."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.app: faust.App = make_app(settings)
        self.runtime = WorkerRuntime(settings, registry)
        self.topics: Topics = declare_topics(self.app, settings)
        self.tables: Tables = declare_tables(self.app, settings)
        self.agents = register_agents(self.app, self.topics, self.tables, self.runtime)
        # GET /kpis/windows: every worker reads the whole KPI topic into its own store.
        self.window_store = WindowStore(settings.api_windows_kept)
        self.kpi_feed = KpiTopicFeed(
            settings.bootstrap_servers,
            settings.kpi_topic,
            self.window_store,
            client_options=aiokafka_options(settings),
        )
        self.runtime.registry.register(
            WindowStoreCollector(lambda: len(self.window_store), lambda: self.kpi_feed.lag_records)
        )
        self.app.task(self.kpi_feed.run)
        # An outage of the broker shows in /metrics and /health while it lasts.
        self.broker_health = BrokerHealth()
        self.runtime.registry.register(BrokerHealthCollector(self.broker_health))
        self.app.task(self._probe_broker)
        # The status page's charts show the last minutes even to a page just opened.
        self.status_history = StatusHistory()
        self.app.timer(HISTORY_INTERVAL_MS / 1000, name="status-history")(self._sample_status)
        register_pages(
            self.app, self.runtime, self.window_store, self.status_history, self.broker_health
        )

    async def _probe_broker(self) -> None:
        def client() -> AIOKafkaClient:
            return AIOKafkaClient(
                bootstrap_servers=self.settings.bootstrap_servers,
                client_id=f"{self.settings.app_id}-health",
                request_timeout_ms=5_000,
                **aiokafka_options(self.settings),  # TLS and SASL as the other clients
            )

        await probe_forever(self.broker_health, client)

    async def _sample_status(self) -> None:
        sample_status(self.runtime, self.status_history)

    def run(self, loglevel: str = "info") -> None:
        """Run until SIGINT/SIGTERM; Faust stops the agents and commits on the way out."""
        worker = faust.Worker(self.app, loglevel=loglevel)
        # Faust's progress spinner puts the root logger at DEBUG (at loglevel warn and
        # above), so every debug line of aiokafka is formatted on the hot path.
        worker.spinner = None
        tune_garbage_collector()
        worker.execute_from_commandline()


# Python's default (700 allocations) runs a young collection every few events here, and
# the full collections it escalates to walk every ticket's state: 190-200 ms pauses and
# about a quarter of the CPU in benchmarks/core_throughput.py. A young generation of
# 50,000 cut the CPU per event by a fifth and the longest pause to 19 ms; the state is
# plain dicts and lists without cycles, so little waits longer to be freed.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections; what was built at start-up is never scanned again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
