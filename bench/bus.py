"""Bus overhead: vaultline's consume path against raw nats-py on the same server, same run.

  vaultline: publish (JetStreamPublisher, PubAck) -> FastStream pull consumer -> middlewares
             -> decode + validate Envelope -> processed_events INSERT in a transaction -> ack
  raw:       nats-py js.publish (PubAck) -> pull fetch -> ack

Both publish the same events with the same in-flight window, on one embedded nats-server
(sync_interval: always) and, for vaultline, one embedded PostgreSQL. Latency is measured per
event from just before publish to the end of its processing (the commit for vaultline, the
ack for raw).

    .venv/bin/python bench/bus.py --events 10000
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig  # noqa: E402

from bench._common import bench_args, embedded_stack  # noqa: E402
from vaultline.adapters.bus.topology import ConsumerSpec  # noqa: E402
from vaultline.bootstrap import Runtime  # noqa: E402
from vaultline.events import new_event  # noqa: E402
from vaultline.settings import Settings  # noqa: E402


def make_events(n: int, creator: str = "sat") -> list:
    return [new_event("image.rejected", creator=creator, key=uuid.uuid4(), payload={"reason": "b"}) for _ in range(n)]


async def publish_all(publish, events, window: int, sent_at: dict, done_at: dict) -> None:
    """window > 1: keep `window` publishes in flight (saturation). window == 1: send the next
    event only once the previous one is fully processed (latency without queueing)."""
    if window == 1:
        for e in events:
            sent_at[e.event_id] = time.perf_counter()
            await publish(e)
            while str(e.event_id) not in done_at and e.event_id not in done_at:
                await asyncio.sleep(0)
        return
    sem = asyncio.Semaphore(window)

    async def one(e):
        async with sem:
            sent_at[e.event_id] = time.perf_counter()
            await publish(e)

    await asyncio.gather(*(one(e) for e in events))


def summary(name: str, n: int, elapsed: float, lat: list[float]) -> dict:
    lat_ms = sorted(x * 1000 for x in lat)
    return {
        "path": name,
        "events": n,
        "events_per_s": round(n / elapsed),
        "p50_ms": round(statistics.median(lat_ms), 2),
        "p99_ms": round(lat_ms[int(len(lat_ms) * 0.99) - 1], 2),
    }


async def bench_vaultline(
    settings: Settings, events, window: int, batch: int, concurrency: int, tag: str = "sat"
) -> dict:
    done_at: dict[uuid.UUID, float] = {}
    sent_at: dict[uuid.UUID, float] = {}
    finished = asyncio.Event()
    n = len(events)

    def factory(p):
        from vaultline.adapters.bus.broker import event_handler

        async def noop(event, d):
            async with p.uow() as tx:
                await tx.first_time("bench", event.event_id, d.stream_seq)
            done_at[event.event_id] = time.perf_counter()
            if len(done_at) == n:
                finished.set()

        return event_handler(noop)

    spec = ConsumerSpec(f"bench_{tag}", (f"image.rejected.{tag}.>",), max_ack_pending=10_000)
    rt = Runtime(
        settings, [spec.name], custom={spec.name: (spec, factory)}, relay=False, concurrency=concurrency, batch_size=batch
    )
    try:
        await rt.start()
        t0 = time.perf_counter()
        await publish_all(rt.publisher.publish, events, window, sent_at, done_at)
        await asyncio.wait_for(finished.wait(), 600)
        elapsed = time.perf_counter() - t0
    finally:
        await rt.stop()
    return summary("vaultline", n, elapsed, [done_at[i] - sent_at[i] for i in done_at])


async def bench_raw(nats_url: str, events, window: int, batch: int, tag: str) -> dict:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    subject_prefix = f"image.rejected.raw{tag}"
    await js.add_consumer(
        "EVENTS",
        ConsumerConfig(
            durable_name=f"raw{tag}", filter_subject=f"{subject_prefix}.>", ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=10_000,
        ),
    )  # fmt: skip
    sub = await js.pull_subscribe_bind(f"raw{tag}", "EVENTS")
    sent_at: dict[str, float] = {}
    done_at: dict[str, float] = {}
    n = len(events)

    async def consume():
        while len(done_at) < n:
            try:
                msgs = await sub.fetch(batch, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                await m.ack()
                done_at[m.headers["Nats-Msg-Id"]] = time.perf_counter()

    async def publish(e):
        sent_at[str(e.event_id)] = sent_at.pop(e.event_id)
        await js.publish(f"{subject_prefix}.{e.key}", e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)})

    consumer = asyncio.create_task(consume())
    t0 = time.perf_counter()
    await publish_all(publish, events, window, sent_at, done_at)
    await asyncio.wait_for(consumer, 600)
    elapsed = time.perf_counter() - t0
    await nc.close()
    return summary("raw nats-py", n, elapsed, [done_at[k] - sent_at[k] for k in done_at])


async def main() -> None:
    args = bench_args(
        __doc__,
        {
            "--events": dict(type=int, default=10_000),
            "--window": dict(type=int, default=64, help="publishes in flight at once"),
            "--batch": dict(type=int, default=64, help="pull batch size (both paths)"),
            "--concurrency": dict(type=int, default=16, help="vaultline handler concurrency (max_workers)"),
            "--latency-events": dict(type=int, default=500, help="events for the one-at-a-time pass"),
        },
    )

    with tempfile.TemporaryDirectory() as tmp:
        async with embedded_stack(Path(tmp)) as (settings, _, _):
            nats_url = settings.nats_url
            ours = await bench_vaultline(settings, make_events(args.events, "sat"), args.window, args.batch, args.concurrency)
            raw = await bench_raw(nats_url, make_events(args.events), args.window, args.batch, "sat")
            # Unloaded latency: one event in flight at a time, so nothing queues.
            ours_1 = await bench_vaultline(settings, make_events(args.latency_events, "unloaded"), 1, 1, 1, "unloaded")
            raw_1 = await bench_raw(nats_url, make_events(args.latency_events), 1, 1, "unloaded")
    for r in (raw, ours):
        r["load"] = f"saturated (window {args.window})"
    for r in (raw_1, ours_1):
        r["load"] = "one at a time"
    rows = [raw, ours, raw_1, ours_1]
    ratio = round(raw["events_per_s"] / ours["events_per_s"], 2)
    if args.json:
        print(json.dumps({"rows": rows, "throughput_ratio_raw_over_vaultline": ratio, "args": vars(args)}))
        return
    print(f"events={args.events} window={args.window} batch={args.batch} concurrency={args.concurrency}\n")
    print("| path | load | events | events/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['load']} | {r['events']} | {r['events_per_s']} | {r['p50_ms']} | {r['p99_ms']} |")
    print(f"\nraw/vaultline throughput ratio: {ratio}x")


if __name__ == "__main__":
    asyncio.run(main())
