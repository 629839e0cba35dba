"""`vaultline replay --rebuild` throughput: events/s fed through the real handlers (tracker, sales)
into a fresh schema, and the whole command (schema + migrations, feeding, row-by-row compare).

The stream is filled fast with nats-py (batches of concurrent publishes): per 10 images the
events of a real run (image.generated, image.cropped, image.approved, media.uploaded) and one
send + its purchase (media.sent, sale.recorded). The first rebuild is swapped in, so the
measured second one compares 100% equal tables of full size, as an operator's check would.
Embedded nats-server (sync_interval: always) and PostgreSQL on this machine.

    .venv/bin/python bench/replay.py --events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import embedded_stack  # noqa: E402
from vaultline.adapters.bus.provision import provision  # noqa: E402
from vaultline.adapters.bus.stream import connect  # noqa: E402
from vaultline.entrypoints import replay  # noqa: E402
from vaultline.events import new_event  # noqa: E402


def image_run(cid: uuid.UUID, creator: str = "bench", i: int = 0) -> list:
    """The events of one image from generation to upload, as the pipeline emits them."""
    g = new_event("image.generated", creator=creator, key=cid, payload={
        "storage_key": f"{creator}/1_raw/{cid}.png", "sha256": uuid.uuid4().hex * 2,
        "phash": f"{uuid.uuid4().int & (2**64 - 1):016x}", "size_bytes": 1000 + i, "original_filename": f"{i}.png"})
    c = new_event("image.cropped", creator=creator, key=cid, cause=g, payload={
        "cropped_key": f"{creator}/2_cropped/{cid}.png", "review_key": f"{creator}/3_review/{cid}.png",
        "mode_used": "chin", "face_found": True, "faces": 1, "cut_y": 500})
    a = new_event("image.approved", creator=creator, key=cid, cause=c, payload={
        "vault": "ppv", "price_cents": 999, "tags": ["beach"], "reviewer": "ann"})
    u = new_event("media.uploaded", creator=creator, key=cid, cause=a, payload={
        "platform": "local", "media_uuid": f"media-{cid}", "vault": "ppv", "vault_folder": "PPV"})
    return [g, c, a, u]  # fmt: skip


def run_events(n: int, creator: str = "bench", send_every: int = 10) -> list:
    events: list = []
    i = 0
    while len(events) < n:
        cid = uuid.uuid4()
        events += image_run(cid, creator, i)
        if send_every and i % send_every == 0:
            fan, msg = f"fan-{i % 500}", str(uuid.uuid4())
            events.append(new_event("media.sent", creator=creator, key=cid, occurred_at=datetime.now(timezone.utc),
                                    payload={"platform": "local", "fan_id": fan, "content_id": cid,
                                             "message_uuid": msg, "price_cents": 999, "sent_by": "bench"}))
            events.append(new_event("sale.recorded", creator=creator, key=uuid.uuid4(), payload={
                "dedupe_key": f"local:purchase:{msg}", "kind": "purchase", "gross_cents": 999, "platform": "local",
                "source": "local", "sold_at": datetime.now(timezone.utc), "fan_id": fan, "route_uuid": msg}))
        i += 1
    return events[:n]  # fmt: skip


async def fill(nats_url: str, events: list, batch: int = 1000) -> float:
    nc, js = await connect(nats_url)
    await provision(js)
    t0 = time.perf_counter()
    for k in range(0, len(events), batch):
        chunk = events[k:k + batch]
        await asyncio.gather(*(js.publish(e.subject, e.to_json(), headers={"Nats-Msg-Id": str(e.event_id)}, timeout=60)
                               for e in chunk))  # fmt: skip
    took = time.perf_counter() - t0
    await nc.close()
    return took


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--send-every", type=int, default=10, help="one send + its sale per N images (0: none)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        async with embedded_stack(Path(tmp)) as (s, _, _):
            nats_url = s.nats_url
            events = run_events(args.events, send_every=args.send_every)
            took = await fill(nats_url, events)
            print(f"published {len(events)} events in {took:.1f}s ({len(events) / took:,.0f}/s)")
            first = await replay.rebuild(s)
            await replay.swap_live(s, first.schema)  # the live tables are now the full projection
            fed: list[float] = []
            t0 = time.perf_counter()
            result = await replay.rebuild(s, progress=lambda done, total: fed.append(time.perf_counter()))
            total = time.perf_counter() - t0
            await replay.drop(s, result.schema)
            feed = (fed[-1] - t0) if fed else total
            print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared)")
            print(f"rebuild of {result.events} events: feeding {feed:.1f}s = {result.events / feed:,.0f} events/s; "
                  f"whole command incl. schema, compare of {sum(t.live_rows for t in result.tables.values()):,} "
                  f"rows: {total:.1f}s = {result.events / total:,.0f} events/s; differences {result.differences}; "
                  f"not projected {len(result.failed)}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
