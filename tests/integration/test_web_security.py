"""The worker's web server on a real worker: basic auth and HTTPS for /metrics and the
API (probes keep /health), no secret in its log or its answers, bad parameters a clear
400; and a flood of requests during a replay answered without stalling the agents."""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.faults import finish, seen, simulated_history, start_replay
from tests.pki import make_pki
from tests.scrape import samples, total

pytestmark = pytest.mark.integration

PASSWORD = "web-Secret-9f3c"  # a test password, grepped for below


def get(url: str, context: ssl.SSLContext | None = None, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_and_https_guard_metrics_and_the_api(isolated_env, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    env = {
        **isolated_env,
        "KPI_WEB_AUTH_USER": "prometheus",
        "KPI_WEB_AUTH_PASSWORD": PASSWORD,
        "KPI_WEB_TLS_CERTFILE": str(pki.broker_cert),
        "KPI_WEB_TLS_KEYFILE": str(pki.broker_key),
        "KPI_WEB_TLS_CAFILE": str(pki.ca),
    }
    url = f"https://127.0.0.1:{env['KPI_WEB_PORT']}"
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        ok = basic("prometheus", PASSWORD)
        deadline = time.monotonic() + 90
        while True:
            assert worker.poll() is None, log.read_text()[-3000:]
            try:
                status, body = get(f"{url}/metrics", trusted, Authorization=ok)
                if status == 200 and b"kpistream_partitions_owned{" in body:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet: ask again until the deadline
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        # Without or with wrong credentials: 401, with the realm to answer.
        assert get(f"{url}/metrics", trusted)[0] == 401
        assert get(f"{url}/metrics", trusted, Authorization=basic("prometheus", "guess"))[0] == 401
        assert get(f"{url}/kpis", trusted)[0] == 401
        assert get(f"{url}/", trusted)[0] == 401
        # Probes need no credentials.
        status, body = get(f"{url}/health", trusted)
        assert status == 200
        assert orjson.loads(body)["status"] == "ok"
        # HTTPS only, with a certificate the CA vouches for: plain HTTP gets nowhere, and
        # a client that does not trust the CA refuses the server.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{env['KPI_WEB_PORT']}/health", timeout=5)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"{url}/health", timeout=5)
        # A bad parameter is a 400 naming it, never a 500.
        for query in ("window=5m", "priority=p0", "bogus=1", "scope=everyone"):
            status, body = get(f"{url}/kpis?{query}", trusted, Authorization=ok)
            assert status == 400, (query, body)
            assert orjson.loads(body)["parameter"] == query.split("=")[0]
        status, body = get(f"{url}/kpis/windows?limit=-3", trusted, Authorization=ok)
        assert (status, orjson.loads(body)["parameter"]) == (400, "limit")
        status, metrics = get(f"{url}/metrics", trusted, Authorization=ok)
        status_json = get(f"{url}/status.json", trusted, Authorization=ok)[1]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    # The password appears nowhere a user could read it.
    for where, text in (
        ("the worker log", log.read_bytes()),
        ("/metrics", metrics),
        ("/status.json", status_json),
    ):
        assert PASSWORD.encode() not in text, where


def test_a_request_flood_does_not_stall_the_agents(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_GRACE": "10m", "KPI_WINDOWS": "1h,1d"}
    path = tmp_path / "history.jsonl"
    # Enough for the whole measurement at full speed (3,400 events/s on an idle machine).
    simulated_history(path, days=16, seed=41)
    worker = start_worker(env)
    replay = start_replay(path, env)

    def processed() -> float:
        return seen(samples(worker.metrics_text()))

    def cpu_s() -> float:
        fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    cpu: list[float] = []

    def rate_over(seconds: float) -> float:
        """Events/s of the worker over `seconds`; its CPU share goes to `cpu`."""
        before, started, cpu_before = processed(), time.monotonic(), cpu_s()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        cpu.append((cpu_s() - cpu_before) / elapsed)
        return (processed() - before) / elapsed

    try:
        time.sleep(3)
        quiet = rate_over(8)
        answers: Counter[int] = Counter()
        stop = threading.Event()
        paths = ["/metrics", "/status.json", "/kpis", "/kpis?window=nope", "/", "/health"]

        def flood(offset: int) -> None:
            n = offset
            while not stop.is_set():
                answers[get(f"{worker.url}{paths[n % len(paths)]}")[0]] += 1
                n += 1

        threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(8)]
        for thread in threads:
            thread.start()
        flooded = rate_over(8)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        after = rate_over(8)
        lag_left = total(samples(worker.metrics_text()), "kpistream_consumer_lag_records")
        finish(replay)
    finally:
        if replay.poll() is None:
            replay.kill()
    requests = sum(answers.values())
    print(
        f"\n{requests:,} requests in 8 s ({requests / 8:,.0f}/s from 8 clients): "
        f"{dict(answers)}; events/s before the flood {quiet:,.0f}, during it {flooded:,.0f}, "
        f"after it {after:,.0f}; worker CPU {', '.join(f'{c:.0%}' for c in cpu)}"
    )
    assert lag_left > 0, "the replay ended during the flood: nothing measured"
    # Every request answered (a 503 with Retry-After only beyond 256 waiting; eight
    # clients never get there), bad parameters with a 400, never a 500.
    assert set(answers) <= {200, 400}, answers
    assert answers[400] > 0
    # Throttled to KPI_WEB_MAX_REQUESTS_PER_SECOND (100) after a burst of 50.
    assert 400 < requests <= 8 * 100 + 100, requests
    # The agents kept going: at least half their pace before and after (the requests
    # are throttled, and /metrics and the status render at most once a second).
    assert flooded >= 0.5 * min(quiet, after), (quiet, flooded, after)
