"""The worker's HTTP endpoints: /metrics for Prometheus, /health, and /kpis (JSON)."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.export.api import QueryError, kpis_json, parse_query
from stream.runtime import WorkerRuntime


def register_pages(app: faust.App, runtime: WorkerRuntime) -> None:
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
            error = {"error": str(exc), "parameter": exc.parameter}
            return aioweb.Response(
                body=orjson.dumps(error), status=400, content_type="application/json"
            )
        body = orjson.dumps(kpis_json(runtime.snapshot(), query))
        return aioweb.Response(body=body, content_type="application/json")

    app.page("/kpis", name="kpis")(kpis)
    app.page("/api/v1/kpis", name="kpis-v1")(kpis)  # the first path it had
