"""The web server's protections: optional basic auth and TLS, and a bound on what a
flood of requests can cost the event loop the agents share with it.

- Basic auth guards every endpoint but /health (probes carry no credentials; it shows
  only the partitions and whether Kafka is reachable). Credentials are compared in
  constant time and never logged.
- TLS: the server's certificate and key (HTTPS); the other workers, which /kpis asks for
  their partitions, are checked against web_tls_cafile.
- `RenderCache`: /metrics and /status.json are rendered at most once per
  `web_render_interval` (250 ms); more frequent requests get that body. Rendering costs
  tens of milliseconds of the loop, so a flood would otherwise starve the agents.
- `FloodGuard`: requests are let through at a bounded rate; the ones above it wait (a
  waiting request costs nothing, and its client sends no other while it waits), and
  beyond a bounded number of waiting ones the answer is 503 at once. Measured without
  it: 8 clients asking as fast as they could (2,364 requests/s) cut event processing
  from 3,546 to 462 events/s, since every request's parsing and answer run on the event
  loop the agents share.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import web as aioweb
from prometheus_client import CollectorRegistry, generate_latest

from stream.settings import Settings

OPEN_PATHS = frozenset({"/health"})
REALM = "kpi-stream"

Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def basic_auth_middleware(user: str, password: str) -> Any:
    expected = f"{user}:{password}".encode()

    @aioweb.middleware
    async def check(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        if request.path in OPEN_PATHS or _authorized(
            request.headers.get("Authorization"), expected
        ):
            return await handler(request)
        return aioweb.json_response(
            {"error": "authentication required (HTTP basic auth)"},
            status=401,
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    return check


def _authorized(header: str | None, expected: bytes) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)


class FloodGuard:
    """A token bucket in front of every handler: `rate_per_s` requests a second on
    average, bursts of `burst`; up to `max_waiting` requests wait for their turn, more
    are answered 503 with Retry-After."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_waiting: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_waiting = max_waiting
        self.clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self.waiting = 0
        self.refused = 0

    def delay_s(self) -> float:
        """Take a token: how long to wait for it (0: at once)."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s

    def middleware(self) -> Any:
        @aioweb.middleware
        async def guard(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
            if self.waiting >= self.max_waiting:
                self.refused += 1
                return aioweb.json_response(
                    {"error": "too many requests waiting; try again in a second"},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            delay = self.delay_s()
            if delay > 0:
                self.waiting += 1
                try:
                    await asyncio.sleep(delay)
                finally:
                    self.waiting -= 1
            return await handler(request)

        return guard


def web_application_options(settings: Settings) -> dict[str, Any]:
    """aiohttp Application options for Faust (`web_application_options`)."""
    # The guard first: a flood of unauthenticated requests is throttled too.
    guard = FloodGuard(settings.web_max_requests_per_second, burst=50)
    middlewares = [guard.middleware()]
    if settings.web_auth_user is not None and settings.web_auth_password is not None:
        password = settings.web_auth_password.get_secret_value()
        middlewares.append(basic_auth_middleware(settings.web_auth_user, password))
    return {"middlewares": middlewares}


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.web_tls_certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    keyfile = str(settings.web_tls_keyfile) if settings.web_tls_keyfile else None
    context.load_cert_chain(str(settings.web_tls_certfile), keyfile)
    return context


def peer_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """For asking the other workers over HTTPS: their certificates against the CA file."""
    if settings.web_tls_certfile is None:
        return None
    cafile = str(settings.web_tls_cafile) if settings.web_tls_cafile else None
    return ssl.create_default_context(cafile=cafile)


def peer_auth(settings: Settings) -> aiohttp.BasicAuth | None:
    if settings.web_auth_user is None or settings.web_auth_password is None:
        return None
    return aiohttp.BasicAuth(settings.web_auth_user, settings.web_auth_password.get_secret_value())


class RenderCache:
    """The last rendering of one body, reused for `max_age_s`."""

    def __init__(self, render: Callable[[], bytes], max_age_s: float = 1.0) -> None:
        self.render = render
        self.max_age_s = max_age_s
        self._body: bytes | None = None
        self._at = float("-inf")
        self.renders = 0

    def body(self, now: Callable[[], float] = time.monotonic) -> bytes:
        t = now()
        if self._body is None or t - self._at >= self.max_age_s:
            self._body = self.render()
            self._at = t
            self.renders += 1
        return self._body


class SelectionCache:
    """Renderings of chosen metric families (`/metrics?name[]=...`), each reused for
    `max_age_s` like the whole exposition, at most `max_selections` kept (a client that
    asks for ever new selections replaces the oldest).

    Only families registered with their names are selectable: the counters, gauges and
    histograms of the pipeline. The KPI families are computed from a snapshot at scrape
    time and are in the whole exposition only."""

    def __init__(
        self, registry: CollectorRegistry, max_age_s: float = 1.0, max_selections: int = 16
    ) -> None:
        self.registry = registry
        self.max_age_s = max_age_s
        self.max_selections = max_selections
        self._caches: dict[frozenset[str], RenderCache] = {}

    def body(self, names: Iterable[str], now: Callable[[], float] = time.monotonic) -> bytes:
        key = frozenset(n[:200] for n in list(names)[:50])
        cache = self._caches.get(key)
        if cache is None:
            if len(self._caches) >= self.max_selections:
                del self._caches[next(iter(self._caches))]
            restricted = self.registry.restricted_registry(sorted(key))
            cache = self._caches[key] = RenderCache(
                lambda: generate_latest(restricted),
                self.max_age_s,
            )
        return cache.body(now)
