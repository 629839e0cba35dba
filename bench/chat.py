"""Chat handler overhead per fan message, model time excluded.

One embedded PostgreSQL holds 1,000 conversations x 50 messages (plus their suggestions and
500 uploaded PPV items, some already sent to each fan). Then `--messages` new fan messages
go through `handlers.chat.handle` with the real Postgres ports (ChatStore, SalesOfferSource =
issue 9's suggest-ppv ranking, SalesFanProfiles) and an instant drafter, so what is timed is
vaultline's own work: storing the message and its pending suggestion, guardrails, the history
window, the fan profile, the offer ranking, prompt construction, answer validation/review and
the final statement (processed_events + suggestion + reply.suggested in the outbox). Each fan
has a `fans` row (spend) and 5 sent PPV items in `sends`.

    .venv/bin/python bench/chat.py        # --conversations 1000 --history 50 --messages 2000

Target: p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaultline.adapters.db import create_pool, migrate  # noqa: E402
from vaultline.adapters.db.chat import PostgresChatStore, SalesFanProfiles, SalesOfferSource  # noqa: E402
from vaultline.adapters.embedded.postgres import EmbeddedPostgres  # noqa: E402
from vaultline.domain.chat import ModelAnswer, ModelOffer, Persona  # noqa: E402
from vaultline.events import MessageReceived, new_event  # noqa: E402
from vaultline.handlers import chat  # noqa: E402
from vaultline.settings import CreatorConfig  # noqa: E402

CREATOR = "bench"
LINES = ["hey you", "how was your day?", "loved the last set", "what are you up to tonight?", "you look amazing",
         "send me something special", "miss you", "good morning!", "haha you're funny", "tell me more"]  # fmt: skip


class InstantDrafter:
    """The model, minus the model: answers at once (with the offer it was given, if any)."""

    async def draft(self, model, messages):
        system = messages[0]["content"]
        offer = None
        if "content_id " in system:
            cid = system.split("content_id ", 1)[1].split(",", 1)[0]
            offer = ModelOffer(content_id=uuid.UUID(cid), price_cents=999)
        return ModelAnswer(drafts=["hey you \U0001f495", "tell me more", "I have something for you"], offer=offer)


async def seed(pool, conversations: int, history: int, content: int) -> list[str]:
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    content_ids = [uuid.uuid4() for _ in range(content)]
    await pool.copy_records_to_table(
        "content",
        columns=["id", "creator", "status", "vault", "price_cents", "phash", "fanvue_media_uuid", "uploaded_at",
                 "times_purchased", "category", "sha256"],
        records=[(cid, CREATOR, "uploaded", "ppv", 999, f"{rng.getrandbits(64):016x}", f"m-{cid}", now,
                  rng.randint(0, 50), "set", uuid.uuid4().hex * 2) for cid in content_ids],
    )  # fmt: skip
    fans = [f"fan{i:05d}" for i in range(conversations)]
    records, sends, fan_rows = [], [], []
    for fan in fans:
        start = now - timedelta(days=30)
        had = rng.sample(content_ids, 5)
        fan_rows.append((CREATOR, "local", fan, rng.randint(0, 50_000)))
        for cid in had:
            sends.append((uuid.uuid4(), uuid.uuid4(), cid, CREATOR, "local", fan, f"m-{cid}", str(uuid.uuid4()), 999,
                          "sent", start, start))  # fmt: skip
        for j in range(history):
            out = j % 2 == 1
            sent = [had[(j // 10) % len(had)]] if out and j % 10 == 1 else []
            records.append((CREATOR, fan, "out" if out else "in", rng.choice(LINES), "local", str(uuid.uuid4()),
                            sent, start + timedelta(minutes=10 * j), uuid.uuid4()))  # fmt: skip
    await pool.copy_records_to_table(
        "messages",
        columns=["creator", "fan_id", "direction", "text", "platform", "platform_message_uuid", "content_ids",
                 "sent_at", "event_id"],
        records=records,
    )  # fmt: skip
    await pool.copy_records_to_table("fans", columns=["creator", "platform", "fan_id", "lifetime_spend_cents"],
                                     records=fan_rows)  # fmt: skip
    await pool.copy_records_to_table(
        "sends",
        columns=["id", "attempt_id", "content_id", "creator", "platform", "fan_id", "media_uuid", "message_uuid",
                 "price_cents", "status", "reserved_at", "sent_at"],
        records=sends,
    )  # fmt: skip
    await pool.execute(
        """INSERT INTO suggestions (creator, fan_id, message_id, message_event_id, status, drafts)
           SELECT creator, fan_id, id, event_id, 'sent', '["a", "b"]'::jsonb FROM messages WHERE direction = 'in'"""
    )
    await pool.execute("ANALYZE")
    return fans


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q) - 1], 2) if len(values) >= 100 else round(max(values), 2)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--history", type=int, default=50, help="messages per conversation before the run")
    ap.add_argument("--content", type=int, default=500, help="uploaded PPV items")
    ap.add_argument("--messages", type=int, default=2000, help="new fan messages handled (timed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from vaultline.entrypoints.logs import configure_logging

    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        db_url = pg.start()
        try:
            await migrate(db_url)
            pool = await create_pool(db_url, max_size=4)
            t0 = time.perf_counter()
            fans = await seed(pool, args.conversations, args.history, args.content)
            seeded_s = time.perf_counter() - t0
            config = CreatorConfig(slug=CREATOR, persona=Persona(name="Bench"))
            async def local(creator: str) -> str:
                return "local"

            ports = chat.ChatPorts(
                store=PostgresChatStore(pool), drafter=InstantDrafter(), offers=SalesOfferSource(pool, local),
                profiles=SalesFanProfiles(pool, local), creator_config=lambda slug: config, default_model="m",
            )  # fmt: skip
            rng = random.Random(11)
            timings: list[float] = []
            cpu: list[float] = []
            statuses: dict[str, int] = {}
            for i in range(args.messages + 50):  # the first 50 warm up connections and plans
                fan = rng.choice(fans)
                event = new_event("message.received", creator=CREATOR, key=fan,
                                  payload=MessageReceived(platform="local", fan_id=fan, message_uuid=str(uuid.uuid4()),
                                                          text=rng.choice(LINES)))  # fmt: skip
                t, c = time.perf_counter(), time.process_time()
                s = await chat.handle(event, ports=ports)
                elapsed = (time.perf_counter() - t) * 1000
                if i >= 50:
                    timings.append(elapsed)
                    cpu.append((time.process_time() - c) * 1000)
                    statuses[s.status] = statuses.get(s.status, 0) + 1
            await pool.close()
        finally:
            pg.stop()
    result = {
        "conversations": args.conversations, "history": args.history, "messages": args.messages,
        "seeded_messages": args.conversations * args.history, "seed_s": round(seeded_s, 1),
        "p50_ms": pct(timings, 50), "p99_ms": pct(timings, 99), "max_ms": round(max(timings), 2),
        "mean_ms": round(statistics.mean(timings), 2), "statuses": statuses, "target_p99_ms": 20,
        # vaultline's own CPU per message in this process (Python side; Postgres runs apart)
        "client_cpu_p50_ms": pct(cpu, 50), "client_cpu_p99_ms": pct(cpu, 99),
        "load_average_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.conversations} conversations x {args.history} messages; {args.messages} new messages timed\n")
    print("| messages | p50 ms | p99 ms | max ms | mean ms | client CPU p50 / p99 ms | target p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.messages} | {result['p50_ms']} | {result['p99_ms']} | {result['max_ms']} | {result['mean_ms']} "
          f"| {result['client_cpu_p50_ms']} / {result['client_cpu_p99_ms']} | 20 ms |")
    print(f"\nsuggestion statuses: {statuses}; load average {result['load_average_1m']} on {result['cpus']} CPUs")


if __name__ == "__main__":
    asyncio.run(main())
