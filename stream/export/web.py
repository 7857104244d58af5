"""The worker's HTTP endpoints: /metrics for Prometheus, /health, /kpis and
/kpis/windows (JSON), and the live status page (/ and /status.json)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import aiohttp
import faust
import orjson
from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.export.api import (
    QueryError,
    kpis_json,
    merge_answers,
    parse_query,
    parse_windows_query,
    windows_json,
)
from stream.export.broker_health import BrokerHealth
from stream.export.status import Sample, StatusHistory, status_summary
from stream.export.web_security import (
    RenderCache,
    SelectionCache,
    peer_auth,
    peer_ssl_context,
)
from stream.export.window_store import WindowStore
from stream.runtime import WorkerRuntime
from stream.settings import Settings


def _bad_request(exc: QueryError) -> Any:
    error = {"error": str(exc), "parameter": exc.parameter}
    return aioweb.Response(body=orjson.dumps(error), status=400, content_type="application/json")


# How long a worker waits for another's local answer before it answers without it.
PEER_TIMEOUT_SECONDS = 2.0


def _peers(app: faust.App) -> list[str]:
    """The web URLs of the other workers of the group, from the partition assignment."""
    try:
        hosts = app.router.table_metadata("tickets")
    except Exception:  # no assignment yet (starting, rebalancing)
        return []
    own = str(app.conf.canonical_url).rstrip("/")
    return sorted(h.rstrip("/") for h in hosts if h.rstrip("/") != own)


async def _ask_peers(
    peers: list[str], params: dict[str, str], settings: Settings
) -> tuple[list[dict[str, Any]], list[str]]:
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)
    answers, unreachable = [], []
    # The peers run with this worker's settings: the same credentials and certificates.
    tls = peer_ssl_context(settings)
    async with aiohttp.ClientSession(timeout=timeout, auth=peer_auth(settings)) as session:

        async def ask(peer: str) -> dict[str, Any] | None:
            try:
                # ssl=True: aiohttp's default checks (plain HTTP when the peer's is).
                async with session.get(
                    f"{peer}/kpis", params=params, ssl=tls if tls is not None else True
                ) as response:
                    if response.status != 200:
                        return None
                    return dict(orjson.loads(await response.read()))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None

        for peer, answer in zip(peers, await asyncio.gather(*map(ask, peers)), strict=True):
            if answer is None:
                unreachable.append(peer)
            else:
                answers.append(answer)
    return answers, unreachable


def registry_samples(runtime: WorkerRuntime) -> Iterator[Sample]:
    """Every sample /metrics would show, as (name, labels, value)."""
    for family in runtime.registry.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def sample_status(runtime: WorkerRuntime, history: StatusHistory) -> dict[str, Any]:
    """The status page's summary now, also kept in the history of its charts."""
    summary = status_summary(registry_samples(runtime), int(time.time() * 1000))
    history.add(summary)
    return summary


STATUS_PAGE = resources.files("stream.export").joinpath("status_page.html").read_bytes()


def register_pages(
    app: faust.App,
    runtime: WorkerRuntime,
    window_store: WindowStore | None = None,
    status_history: StatusHistory | None = None,
    broker_health: BrokerHealth | None = None,
) -> None:
    history = status_history if status_history is not None else StatusHistory()
    # At most one rendering per interval each, however many ask (web_security.py): short
    # enough that /metrics is fresh within a second, long enough that a flood of requests
    # costs at most a few renderings a second.
    interval_s = runtime.settings.web_render_interval_seconds
    exposition = RenderCache(lambda: generate_latest(runtime.registry), interval_s)
    selections = SelectionCache(runtime.registry, interval_s)
    status = RenderCache(
        lambda: orjson.dumps({**sample_status(runtime, history), "history": history.as_json()}),
        interval_s,
    )

    @app.page("/", name="status-page")
    async def status_page(view: Any, request: Any) -> Any:
        return aioweb.Response(body=STATUS_PAGE, content_type="text/html", charset="utf-8")

    @app.page("/status.json", name="status-json")
    async def status_json(view: Any, request: Any) -> Any:
        return aioweb.Response(body=status.body(), content_type="application/json")

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        # `?name[]=<family>` (repeatable, as in client_python's own exposition): only
        # those families, rendered without the KPI snapshot (a progress poll's cost).
        names = request.query.getall("name[]", [])
        body = selections.body(names) if names else exposition.body()
        return aioweb.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(view: Any, request: Any) -> Any:
        # Always 200 while the process serves: a liveness probe must not restart a
        # worker because Kafka is away (it reconnects by itself); "degraded" says so.
        body: dict[str, Any] = {"status": "ok", "partitions": sorted(runtime.partitions)}
        if broker_health is not None:
            body["kafka"] = broker_health.as_json(int(time.time() * 1000))
            if broker_health.reachable is False:
                body["status"] = "degraded"
        return aioweb.Response(body=orjson.dumps(body), content_type="application/json")

    async def kpis(view: Any, request: Any) -> Any:
        try:
            query = parse_query(dict(request.query), runtime.settings.windows)
        except QueryError as exc:
            return _bad_request(exc)
        local = kpis_json(runtime.snapshot(), query, sketches=query.scope == "local")
        peers = [] if query.scope == "local" else _peers(app)
        if not peers:
            return aioweb.Response(body=orjson.dumps(local), content_type="application/json")
        # Every worker answers for every partition: ask the others for theirs and merge.
        local = kpis_json(runtime.snapshot(), query, sketches=True)
        params = {k: v for k, v in request.query.items() if k != "scope"}
        answers, unreachable = await _ask_peers(
            peers, {**params, "scope": "local"}, runtime.settings
        )
        body = merge_answers([local, *answers], unreachable)
        return aioweb.Response(body=orjson.dumps(body), content_type="application/json")

    app.page("/kpis", name="kpis")(kpis)
    app.page("/api/v1/kpis", name="kpis-v1")(kpis)  # the first path it had

    if window_store is None:
        return
    store = window_store

    @app.page("/kpis/windows", name="kpi-windows")
    async def kpi_windows(view: Any, request: Any) -> Any:
        try:
            # The configured sizes, and the customer retention window (O8).
            windows = tuple(
                dict.fromkeys((*runtime.settings.windows, runtime.settings.retention_window))
            )
            query = parse_windows_query(dict(request.query), windows)
        except QueryError as exc:
            return _bad_request(exc)
        body = orjson.dumps(windows_json(store, query))
        return aioweb.Response(body=body, content_type="application/json")
