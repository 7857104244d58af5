"""The worker's HTTP endpoints: /metrics for Prometheus, /health, and /api/v1/kpis."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.kpi.snapshot import QUANTILES, KpiSnapshot
from stream.kpi.windows import format_duration_ms
from stream.runtime import WorkerRuntime


def snapshot_json(snap: KpiSnapshot) -> dict[str, Any]:
    """The on-demand view of the KPIs: what /metrics shows, as one JSON document."""
    return {
        "partitions": list(snap.partitions),
        "tickets_active": [
            {"queue": q, "priority": p, "status": s, "count": n}
            for (q, p, s), n in sorted(snap.active.items())
        ],
        "first_response_windows": [
            {
                "window": format_duration_ms(size),
                "start_ms": summary.start_ms,
                "end_ms": summary.end_ms,
                "count": summary.overall.count,
                "quantiles_seconds": {str(q): summary.overall.quantile(q) for q in QUANTILES},
                "by_queue_priority": [
                    {
                        "queue": queue,
                        "priority": priority,
                        "count": sketch.count,
                        "quantiles_seconds": {str(q): sketch.quantile(q) for q in QUANTILES},
                    }
                    for (queue, priority), sketch in sorted(summary.by_dims.items())
                ],
            }
            for size, summary in sorted(snap.first_response_windows.items())
        ],
        "watermarks_ms": {str(p): w for p, w in sorted(snap.watermarks_ms.items())},
    }


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

    @app.page("/api/v1/kpis")
    async def kpis(view: Any, request: Any) -> Any:
        body = orjson.dumps(snapshot_json(runtime.snapshot()))
        return aioweb.Response(body=body, content_type="application/json")
