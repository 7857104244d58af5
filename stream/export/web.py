"""The worker's HTTP endpoints: /metrics for Prometheus, /health, /kpis and
/kpis/windows (JSON)."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.export.api import (
    QueryError,
    kpis_json,
    parse_query,
    parse_windows_query,
    windows_json,
)
from stream.export.window_store import WindowStore
from stream.runtime import WorkerRuntime


def _bad_request(exc: QueryError) -> Any:
    error = {"error": str(exc), "parameter": exc.parameter}
    return aioweb.Response(body=orjson.dumps(error), status=400, content_type="application/json")


def register_pages(
    app: faust.App, runtime: WorkerRuntime, window_store: WindowStore | None = None
) -> None:
    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        return aioweb.Response(
            body=generate_latest(runtime.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @app.page("/health")
    async def health(view: Any, request: Any) -> Any:
        body = {"status": "ok", "partitions": sorted(runtime.partitions)}
        return aioweb.Response(body=orjson.dumps(body), content_type="application/json")

    async def kpis(view: Any, request: Any) -> Any:
        try:
            query = parse_query(dict(request.query), runtime.settings.windows)
        except QueryError as exc:
            return _bad_request(exc)
        body = orjson.dumps(kpis_json(runtime.snapshot(), query))
        return aioweb.Response(body=body, content_type="application/json")

    app.page("/kpis", name="kpis")(kpis)
    app.page("/api/v1/kpis", name="kpis-v1")(kpis)  # the first path it had

    if window_store is None:
        return
    store = window_store

    @app.page("/kpis/windows", name="kpi-windows")
    async def kpi_windows(view: Any, request: Any) -> Any:
        try:
            query = parse_windows_query(dict(request.query), runtime.settings.windows)
        except QueryError as exc:
            return _bad_request(exc)
        body = orjson.dumps(windows_json(store, query))
        return aioweb.Response(body=body, content_type="application/json")
