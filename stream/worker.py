"""Builds the worker from settings (app, topics, tables, agents, pages) and runs it."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry

from stream.agents import register_agents
from stream.app import make_app
from stream.export.web import register_pages
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
        register_pages(self.app, self.runtime)

    def run(self, loglevel: str = "info") -> None:
        """Run until SIGINT/SIGTERM; Faust stops the agents and commits on the way out."""
        worker = faust.Worker(self.app, loglevel=loglevel)
        worker.execute_from_commandline()
