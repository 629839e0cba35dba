"""The deploy/ topology without containers: three nats-server processes on loopback as one
JetStream cluster (tests/nats_cluster.py), EVENTS at R3, crop and upload workers in their own
processes, tracker and library in the test's, a reviewer approving what reaches review. The node
leading the EVENTS stream is killed with SIGKILL mid-run, forcing an election under load: every
image is still uploaded exactly once, every event is in the stream exactly once and every
consumer drains; the node comes back on its ports and its replica catches up."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter

import pytest

from tests.children import start_worker, stop_workers, worker_died
from tests.images import Placement, canvas, png_bytes
from tests.integration.test_upload import approval
from tests.nats_cluster import CLUSTER_NAME, NatsCluster
from tests.waiting import wait_until
from vaultline.adapters.bus.broker import make_broker
from vaultline.adapters.bus.stream import connect, read_events
from vaultline.adapters.bus.topology import ADVISORIES_STREAM, CONSUMERS, EVENTS_STREAM
from vaultline.bootstrap import Ingestor, Runtime
from vaultline.domain.retry import TransientError
from vaultline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N_IMAGES = 48
VAULTS = ("feed", "ppv", "archive")
PIPELINE = ("image.generated", "image.cropped", "image.approved", "media.uploaded")
DRAINED = ("tracker", "library", "crop", "upload")


def images(n: int) -> list[bytes]:
    """n distinct portraits, 416x608 (half the ComfyUI size, so the crop stays cheap)."""
    return [
        png_bytes(canvas([Placement("astronaut", center=(208 + (i % 7) * 3, 200 + (i // 7) * 2), width=400,
                                    angle=(i % 5) - 2)], size=(416, 608)))
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def cluster(tmp_path):
    with NatsCluster(tmp_path / "nats") as c:
        yield c


async def until_stored(publish, what: str, timeout: float = 30.0) -> None:
    """Publish again while the cluster elects a leader (same event id: the stream dedupes)."""

    async def attempt() -> bool:
        try:
            await publish()
        except TransientError:
            return False
        return True

    await wait_until(attempt, timeout=timeout, interval=0.2, what=what)


async def stream_cluster(js, stream: str):
    try:
        return (await js.stream_info(stream)).cluster
    except Exception:  # no leader to answer yet (timeout / no responders)
        return None


async def replicas_current(js, stream: str, size: int = 3) -> bool:
    c = await stream_cluster(js, stream)
    peers = (c and c.replicas) or []
    return bool(c and c.leader) and len(peers) == size - 1 and all(p.current and not p.offline and not p.lag for p in peers)


async def test_a_killed_stream_leader_loses_nothing_and_its_replica_catches_up(cluster, migrated_db, tmp_path):
    started = time.monotonic()
    settings = Settings(
        nats_url=cluster.url, database_url=migrated_db, data_dir=tmp_path / "data", stream_replicas=3,
        max_deliver=8, retry_base_delay=0.2, retry_max_delay=2.0,
    )  # fmt: skip
    pngs = images(N_IMAGES)
    log = tmp_path / "workers.log"
    workers: list[subprocess.Popen] = []
    approved: dict = {}
    try:
        async with Runtime(settings, ["tracker", "library"]) as rt:  # provisions the streams at R3
            js, pool = rt.ports.js, rt.pool
            for stream in (EVENTS_STREAM, ADVISORIES_STREAM):
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3 and info.cluster.name == CLUSTER_NAME
                await wait_until(lambda s=stream: replicas_current(js, s), timeout=30, what=f"{stream} on 3 nodes")
            for name in DRAINED:  # consumers inherit the stream's replicas
                assert len((await js.consumer_info(EVENTS_STREAM, CONSUMERS[name].name)).cluster.replicas) == 2

            # Each worker gets all three URLs; no Fanvue tokens: the local platform. Metrics on a
            # port of the OS's choosing: two workers starting at once both find 9464 free.
            env = {"VAULTLINE_STREAM_REPLICAS": "3", "VAULTLINE_METRICS_PORT": "0"}
            workers += [start_worker(name, settings, env, log) for name in ("crop", "upload")]
            ingestor = Ingestor(rt.ports)

            async def feed(batch: range) -> None:
                for i in batch:
                    await until_stored(
                        lambda i=i: ingestor.ingest_bytes(pngs[i], filename=f"img{i:03d}.png", source="cli",
                                                          creator="elena"),
                        what=f"image {i} to be ingested",
                    )  # fmt: skip

            async def reviewer() -> None:
                # The review page's user: approves every image that reaches review.
                while len(approved) < N_IMAGES:
                    for row in await pool.fetch("SELECT id FROM content WHERE status = 'in_review'"):
                        if row["id"] not in approved:
                            event = approved[row["id"]] = approval(row["id"], VAULTS[len(approved) % len(VAULTS)])
                            await until_stored(lambda e=event: rt.publisher.publish(e), what="an approval")
                    await asyncio.sleep(0.2)  # the reviewer's pace, not synchronisation

            async def uploaded() -> int:
                for w in workers:
                    worker_died(w, log)
                return await pool.fetchval("SELECT count(*) FROM content WHERE status = 'uploaded'")

            reviewing = rt.add_task(reviewer())
            await feed(range(N_IMAGES // 2))
            await wait_until(uploaded, timeout=90, interval=0.2, what="the first upload")

            # Mid-run (crops, approvals and uploads in flight): crash the EVENTS leader.
            leader = (await js.stream_info(EVENTS_STREAM)).cluster.leader
            victim = cluster.node(leader)
            await asyncio.to_thread(victim.kill)
            killed_at, uploaded_at_kill = time.monotonic(), await uploaded()
            await feed(range(N_IMAGES // 2, N_IMAGES))  # publishing fails over to the new leader

            async def leader_now() -> str | None:
                c = await stream_cluster(js, EVENTS_STREAM)
                return c and c.leader

            new_leader = await wait_until(leader_now, timeout=30, what="the EVENTS leader")

            async def all_uploaded() -> bool:
                return await uploaded() == N_IMAGES

            await wait_until(all_uploaded, timeout=120, interval=0.3, what=f"{N_IMAGES} uploads")
            await reviewing  # done: it approved all of them
            finished_in = time.monotonic() - killed_at

            async def drained() -> bool:
                infos = [await js.consumer_info(EVENTS_STREAM, CONSUMERS[n].name) for n in DRAINED]
                return all(ci.num_pending == 0 and ci.num_ack_pending == 0 for ci in infos)

            await wait_until(drained, timeout=30, interval=0.2, what="every consumer to drain")
            types: Counter = Counter()
            copies: Counter = Counter()
            async for se in read_events(js):
                types[se.event.type] += 1
                copies[se.event.event_id] += 1
                copies[(se.event.type, se.event.key)] += 1
            steps = Counter(r["step"] for r in await pool.fetch("SELECT step FROM uploads"))
            dead = await pool.fetchval("SELECT count(*) FROM dead_letters")
            contents = {r["id"] for r in await pool.fetch("SELECT id FROM content")}

            # The node comes back on the same ports and catches up from the other two.
            await asyncio.to_thread(victim.start)
            await wait_until(lambda: replicas_current(js, EVENTS_STREAM), timeout=60, interval=0.3,
                             what=f"{leader}'s EVENTS replica to be current again")  # fmt: skip
            back = await js.stream_info(EVENTS_STREAM)
            caught_up_in = time.monotonic() - killed_at
    finally:
        await stop_workers(workers)
    print(f"\n3-node cluster: {N_IMAGES} images; EVENTS leader {leader} killed with {uploaded_at_kill} uploaded, "
          f"{new_leader} took over; all uploaded {finished_in:.1f}s after the kill; {leader} current again "
          f"{caught_up_in:.1f}s after it; test {time.monotonic() - started:.1f}s")  # fmt: skip

    assert 0 < uploaded_at_kill < N_IMAGES and new_leader != leader
    assert {t: types[t] for t in PIPELINE} == dict.fromkeys(PIPELINE, N_IMAGES), types  # nothing lost
    assert max(copies.values()) == 1, [k for k, v in copies.items() if v > 1]  # nothing twice
    assert set(approved) == contents and len(contents) == N_IMAGES
    assert steps == {"done": N_IMAGES} and dead == 0
    kept = list((settings.library_root / "elena" / "5_uploaded").rglob("*.*"))
    assert len(kept) == N_IMAGES
    assert leader in {back.cluster.leader, *(p.name for p in back.cluster.replicas)}
    assert back.state.messages == sum(types.values())


async def test_a_client_reconnects_to_a_node_it_learnt_from_the_cluster(cluster):
    """nats-py adds the nodes a server announces (INFO connect_urls) to its pool without the
    credentials of the URL it was given; a reconnect to one of them was refused (Authorization
    Violation) and nats-py then closed the connection for good: a worker alive but deaf."""
    first = cluster.nodes[0]
    nc, _ = await connect(first.url, long_lived=True)
    broker = make_broker(first.url)
    await broker.connect()
    try:
        clients = (nc, broker.connection)
        await wait_until(lambda: all(len(c.discovered_servers) >= 2 for c in clients),
                         what="the other nodes to be announced")  # fmt: skip
        await asyncio.to_thread(first.kill)  # only the announced nodes (no password in their URLs) remain
        for client in clients:
            await wait_until(lambda c=client: c.is_connected and c.connected_url.port != first.port, timeout=30,
                             what="a reconnect to another node")  # fmt: skip
            await client.flush(timeout=5)  # a round trip on the new connection
    finally:
        with contextlib.suppress(Exception):  # a failed reconnect leaves nothing to stop cleanly
            await broker.stop()
        await nc.close()
