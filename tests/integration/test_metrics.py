"""/metrics on real NATS + PostgreSQL: the exposition parses with prometheus_client's own text
parser, and its numbers move when handlers handle (or fail) events."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.analytics_seed import seed_events
from tests.waiting import wait_until
from vaultline.adapters.bus.topology import ConsumerSpec
from vaultline.bootstrap import Runtime
from vaultline.domain.retry import PermanentError
from vaultline.entrypoints.metrics_http import metrics_server, runtime_refresh

pytestmark = pytest.mark.integration

TOKEN = "metrics-test-token-6d0f3c9a1b7e4d2f8a5c0e9b3d7f1a4c"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def _boom(_ports):
    async def run(body: bytes, d) -> None:
        raise PermanentError("this handler refuses everything")

    return run


async def test_metrics_parse_and_move_when_events_are_handled(settings, pool):
    events = seed_events()
    custom = {"boom": (ConsumerSpec("boom", ("image.rejected.>",), max_deliver=1), _boom)}
    async with Runtime(settings, ["analytics", "boom"], relay=False, custom=custom) as rt:
        server = metrics_server(host="127.0.0.1", port=0, token=TOKEN, public=False, refresh=runtime_refresh(rt))
        task = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started, what="metrics server")
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                assert (await http.get("/metrics")).status_code == 401
                assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 403

                async def scrape() -> str:
                    r = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
                    return r.text

                before = await scrape()
                for e in events:
                    await rt.publisher.publish(e)
                await wait_until(
                    lambda: pool.fetchval("SELECT count(*) = $1 FROM processed_events WHERE handler = 'analytics'",
                                          len(events)), timeout=60, what="analytics done")  # fmt: skip

                async def boom_failed():
                    return value(await scrape(), "vaultline_events_failed_total", handler="boom", kind="permanent")

                await wait_until(boom_failed, what="the failing handler to be counted")
                after = await scrape()
        finally:
            await server.stop()
            await task

    handled = "vaultline_events_handled_total"
    assert value(after, handled, handler="analytics") - value(before, handled, handler="analytics") == len(events)
    count = "vaultline_handler_seconds_count"
    assert value(after, count, handler="analytics") - value(before, count, handler="analytics") == len(events)
    assert value(after, "vaultline_events_failed_total", handler="boom", kind="permanent") >= 1
    # Business counters, once per event (s1's second report is the same sale and counts once).
    delta = lambda name, **l: value(after, name, **l) - value(before, name, **l)  # noqa: E731
    assert delta("vaultline_sales_cents_total", kind="purchase") == 6300
    assert delta("vaultline_sales_total", kind="purchase") == 4
    assert delta("vaultline_uploads_total", result="ok") == 4
    assert delta("vaultline_sends_total", result="sent") == 7
    assert delta("vaultline_images_total", stage="generated") == 6
    # Read from JetStream and PostgreSQL at scrape time.
    assert ("vaultline_consumer_pending", (("consumer", "analytics"), ("stream", "EVENTS"))) in samples(after)
    assert value(after, "vaultline_consumer_pending", consumer="analytics", stream="EVENTS") == 0
    assert ("vaultline_outbox_backlog", ()) in samples(after)
    assert ("vaultline_dead_letters", (("consumer", "upload"),)) in samples(after)


async def test_metrics_public_needs_no_token(settings, pool):
    server = metrics_server(host="127.0.0.1", port=0, token=None, public=True, refresh=None)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, what="metrics server")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            r = await http.get("/metrics")
            assert r.status_code == 200
            assert list(text_string_to_metric_families(r.text))
            assert (await http.get("/health")).json() == {"status": "ok"}
            assert (await http.get("/other")).status_code == 404
    finally:
        await server.stop()
        await task


async def test_two_workers_asking_for_one_metrics_port_both_serve():
    """Workers started together on one machine share the default port: the first gets it, the
    other falls back to a free one. Both start at once, so a probe-then-bind would race."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        wanted = probe.getsockname()[1]
    servers = [metrics_server(host="127.0.0.1", port=wanted, token=None, public=True, refresh=None)
               for _ in range(2)]  # fmt: skip
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    try:
        await wait_until(lambda: all(s.started for s in servers) or any(t.done() for t in tasks),
                         what="both metrics servers")  # fmt: skip
        for t in tasks:
            if t.done():
                t.result()  # the bind error, if any
        ports = sorted(int(s.url.rsplit(":", 1)[1]) for s in servers)
        assert wanted in ports and len(set(ports)) == 2
        assert [s.fell_back for s in servers].count(True) == 1
        async with httpx.AsyncClient(timeout=10) as http:
            for s in servers:
                assert (await http.get(f"{s.url}/health")).json() == {"status": "ok"}
    finally:
        for s in servers:
            await s.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.timeout(120)
async def test_vaultline_worker_serves_metrics(settings, pool, tmp_path):
    """`vaultline worker analytics --metrics-port 0` as an operator starts it."""
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTLINE_")} | {
        "VAULTLINE_NATS_URL": settings.nats_url, "VAULTLINE_DATABASE_URL": settings.database_url,
        "VAULTLINE_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
    }  # fmt: skip
    log = tmp_path / "worker.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "vaultline", "worker", "analytics", "--metrics-port", "0",
                                 "--data-dir", str(tmp_path)], env=env, stdout=f, stderr=f)  # fmt: skip
    try:
        def started():
            assert proc.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
            return re.search(r"metrics on\s+(http://\S+)/metrics", log.read_text())

        found = await wait_until(started, timeout=60, what="the worker to start")
        url = found.group(1)
        async with httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            from vaultline.adapters.bus.broker import JetStreamPublisher, make_broker

            broker = make_broker(settings.nats_url)
            await broker.connect()
            try:
                for e in seed_events()[:6]:  # the six image.generated
                    await JetStreamPublisher(broker).publish(e)
            finally:
                await broker.stop()

            async def handled():
                r = await http.get("/metrics")
                assert r.status_code == 200
                return value(r.text, "vaultline_events_handled_total", handler="analytics") == 6

            await wait_until(handled, timeout=30, what="the worker's /metrics to count 6 events")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
