"""The web server's guards: basic auth (every path but /health), the settings that turn
it and HTTPS on, the render cache that bounds a flood's cost, and the API's parameter
parsing, which answers anything a client sends with a value or a 400, never a 500."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from stream.export.api import QueryError, parse_query, parse_windows_query
from stream.export.web_security import (
    FloodGuard,
    RenderCache,
    SelectionCache,
    basic_auth_middleware,
    server_ssl_context,
)
from stream.settings import Settings
from tests.pki import make_pki


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def statuses(headers: dict[str, str]) -> dict[str, int]:
    async def ok(request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text="fine")

    async def run() -> dict[str, int]:
        app = aioweb.Application(middlewares=[basic_auth_middleware("sre", "s3cret:pass")])
        for path in ("/metrics", "/health", "/kpis"):
            app.router.add_get(path, ok)
        async with TestClient(TestServer(app)) as client:
            out = {}
            for path in ("/metrics", "/health", "/kpis"):
                response = await client.get(path, headers=headers)
                out[path] = response.status
                if response.status == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
                    assert "s3cret" not in await response.text()
            return out

    return asyncio.run(run())


def test_basic_auth_guards_everything_but_health() -> None:
    assert statuses({}) == {"/metrics": 401, "/health": 200, "/kpis": 401}
    assert statuses(auth("sre", "s3cret:pass")) == {"/metrics": 200, "/health": 200, "/kpis": 200}


@pytest.mark.parametrize(
    "header",
    [
        auth("sre", "wrong"),
        auth("other", "s3cret:pass"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer s3cret:pass"},
        {"Authorization": "Basic " + base64.b64encode(b"sre:s3cret:pass ").decode()},
    ],
)
def test_wrong_or_malformed_credentials_are_refused(header: dict[str, str]) -> None:
    assert statuses(header)["/metrics"] == 401


def test_web_security_settings_are_checked_and_keep_the_password_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set both or neither"):
        Settings(web_auth_user="sre")
    with pytest.raises(ValueError, match="web_tls_certfile"):
        Settings(web_tls_certfile=tmp_path / "missing.pem")
    settings = Settings(web_auth_user="sre", web_auth_password="hunter2-web")
    assert "hunter2-web" not in repr(settings)
    assert "hunter2-web" not in str(settings.model_dump())
    pki = make_pki(tmp_path)
    context = server_ssl_context(
        Settings(web_tls_certfile=pki.broker_cert, web_tls_keyfile=pki.broker_key)
    )
    assert context is not None
    assert server_ssl_context(Settings()) is None


def test_the_render_cache_renders_at_most_once_per_max_age() -> None:
    clock = [0.0]
    rendered = []

    def render() -> bytes:
        rendered.append(clock[0])
        return str(len(rendered)).encode()

    cache = RenderCache(render, max_age_s=1.0)
    bodies = []
    for step in range(30):  # 30 requests over 3 seconds
        clock[0] = step * 0.1
        bodies.append(cache.body(now=lambda: clock[0]))
    assert cache.renders == 3
    assert bodies[0] == b"1"
    assert bodies[-1] == b"3"


def test_a_selection_renders_only_the_families_asked_for_and_never_the_collectors() -> None:
    registry = CollectorRegistry()
    events = Counter("kpistream_events", "Events.", ["topic"], registry=registry)
    events.labels("helpdesk.events").inc(3)
    Counter("kpistream_events_rejected", "Rejected.", registry=registry).inc()
    collected = []

    class Snapshot:  # a KPI collector: computed at scrape time, costly
        def collect(self) -> list[Any]:
            collected.append(1)
            return []

    registry.register(Snapshot())  # type: ignore[arg-type]
    clock = [0.0]
    cache = SelectionCache(registry, max_age_s=1.0, max_selections=2)
    text = cache.body(["kpistream_events_total"], now=lambda: clock[0]).decode()
    assert 'kpistream_events_total{topic="helpdesk.events"} 3.0' in text
    assert "rejected" not in text
    assert "# HELP kpistream_events_total Events." in text
    assert collected == []
    events.labels("helpdesk.events").inc()
    clock[0] = 0.5  # within the render interval: the same body
    assert "3.0" in cache.body(["kpistream_events_total"], now=lambda: clock[0]).decode()
    clock[0] = 1.0
    assert "4.0" in cache.body(["kpistream_events_total"], now=lambda: clock[0]).decode()
    for name in ("a", "b", "c"):  # new selections replace the oldest: bounded
        cache.body([name], now=lambda: clock[0])
    assert len(cache._caches) == 2


params = st.dictionaries(
    st.sampled_from(["kpi", "window", "queue", "priority", "scope", "from", "to", "limit"])
    | st.text(max_size=5),
    st.text(max_size=30),
    max_size=6,
)


@given(params)
def test_any_query_is_parsed_or_refused_with_a_named_parameter(query: dict[str, str]) -> None:
    refusals: list[QueryError] = []
    for parse in (parse_query, parse_windows_query):
        try:
            parse(query, ("1m", "1h", "1d"))
        except QueryError as exc:  # anything else fails the test (a 500)
            refusals.append(exc)
    for refusal in refusals:
        assert refusal.parameter in query  # the 400 names what the client sent
        assert str(refusal)


def test_the_flood_guard_lets_a_burst_through_then_spaces_requests_by_the_rate() -> None:
    clock = [0.0]
    guard = FloodGuard(rate_per_s=10, burst=3, clock=lambda: clock[0])
    assert [guard.delay_s() for _ in range(3)] == [0.0, 0.0, 0.0]
    # The fourth and fifth wait for the tokens to come back: 0.1 s and 0.2 s.
    assert [round(guard.delay_s(), 3) for _ in range(2)] == [0.1, 0.2]
    clock[0] = 10.0  # a quiet while refills the bucket, up to the burst
    assert [guard.delay_s() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_the_flood_guard_answers_503_beyond_the_waiting_bound() -> None:
    guard = FloodGuard(rate_per_s=1, burst=1, max_waiting=2)

    async def ok(request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text="fine")

    async def run() -> list[int]:
        app = aioweb.Application(middlewares=[guard.middleware()])
        app.router.add_get("/", ok)
        async with TestClient(TestServer(app)) as client:
            responses = await asyncio.gather(*(client.get("/") for _ in range(5)))
            return sorted(r.status for r in responses)

    # One at once, two waiting for their second, two refused with Retry-After.
    assert asyncio.run(run()) == [200, 200, 200, 503, 503]
