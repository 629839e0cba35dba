"""The Fanvue sync loop: the polling twin of the webhooks, for operators without a public URL.

One pass for one creator (`sync_creator`):
1. chats: `GET /chats` (most recent first) down to the newest chat already seen; for each chat
   with news, `GET /chats/{fan}/messages` (newest first) down to the last message seen there.
   Fan messages -> message.received; our PPV messages -> remembered as open, or a purchase if
   already bought.
2. open PPV messages (ours, not bought yet, sent within the lookback): re-read those chats for
   `purchasedAt` -> sale.recorded (exact purchase by message uuid).
3. earnings: `GET /insights/earnings` (cursor pages) from the last imported window end minus an
   overlap (late rows) -> sale.recorded for what the other paths missed.
Each step commits its events to the outbox together with its new high-water marks (one
transaction), so a crash repeats at most a step, and a repeated fact has the same event id.
All calls go through the creator's client, so the loop shares the request budget with uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from vaultline.domain.errors import Invalid
from vaultline.domain.fanvue_sync import (
    OpenPpv,
    earnings_fact,
    fan_message_fact,
    ppv_price,
    purchase_fact,
    sender_of,
    sent_at,
)
from vaultline.domain.webhooks import Fact, fan_ref, parse_time
from vaultline.events import Envelope, utcnow

log = structlog.get_logger("vaultline.fanvue_sync")

# First pass of a creator: fan messages this recent become events (older ones are history, not
# something to answer now); earnings go back `earnings_lookback`.
FIRST_MESSAGES_LOOKBACK = timedelta(days=1)
EARNINGS_OVERLAP = timedelta(days=2)  # earnings rows can appear late: re-read this much
OPEN_PPV_WINDOW = timedelta(days=30)  # how long an unbought PPV message is watched


class SyncApi(Protocol):
    """What the loop reads from Fanvue (FanvueClient implements it)."""

    async def list_chats(self, *, page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], bool]: ...

    async def chat_messages(self, fan_uuid: str, *, page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], bool]: ...

    async def earnings(self, start: datetime, end: datetime, *, cursor: str | None = None,
                       size: int = 50) -> tuple[list[dict[str, Any]], str | None]: ...


class SyncStore(Protocol):
    async def fanvue_creators(self) -> list[str]: ...

    async def sync_state(self, creator: str) -> dict[str, str]: ...

    async def open_ppv(self, creator: str, *, since: datetime, limit: int = 100) -> Sequence[OpenPpv]: ...

    async def record(self, events: Sequence[Envelope], *, creator: str | None = None,
                     state: dict[str, str] | None = None, open_ppv: Sequence[OpenPpv] = (),
                     closed_ppv: Sequence[str] = ()) -> int: ...


@dataclass
class SyncReport:
    creator: str
    messages: int = 0  # fan messages seen (events, new or not)
    purchases: int = 0  # exact purchases (purchasedAt)
    earnings: int = 0  # earnings rows
    new_events: int = 0  # events not recorded before
    requests: int = 0
    skipped: list[str] = field(default_factory=list)  # rows we could not read

    def as_json(self) -> dict[str, Any]:
        return {"creator": self.creator, "messages": self.messages, "purchases": self.purchases,
                "earnings": self.earnings, "new_events": self.new_events, "requests": self.requests,
                "skipped": self.skipped}


@dataclass
class _Pass:
    creator: str
    api: SyncApi
    store: SyncStore
    now: datetime
    report: SyncReport

    async def messages_until(self, fan: str, stop: datetime | None, *,
                             max_pages: int) -> list[dict[str, Any]]:
        """The fan's chat, newest first, down to (not including) `stop`."""
        out: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            items, more = await self.api.chat_messages(fan, page=page, size=50)
            self.report.requests += 1
            for m in items:
                at = sent_at(m)
                if stop is not None and at is not None and at <= stop:
                    return out
                out.append(m)
            if not more:
                break
        return out


async def sync_creator(creator: str, api: SyncApi, store: SyncStore, *, now: datetime,
                       earnings_lookback: timedelta = timedelta(days=30), max_chat_pages: int = 20,
                       max_message_pages: int = 4) -> SyncReport:
    """One pass (see the module doc); the number of pages read per list is bounded."""
    report = SyncReport(creator)
    p = _Pass(creator, api, store, now, report)
    state = await store.sync_state(creator)
    await _sync_chats(p, state, max_chat_pages, max_message_pages)
    await _sync_open_ppv(p, max_message_pages)
    await _sync_earnings(p, state, earnings_lookback)
    log.info("fanvue sync pass", **report.as_json())
    return report


async def _sync_chats(p: _Pass, state: dict[str, str], max_chat_pages: int, max_message_pages: int) -> None:
    chats_mark = parse_time(state.get("chats")) or (p.now - FIRST_MESSAGES_LOOKBACK)
    newest = chats_mark
    changed: list[dict[str, Any]] = []
    for page in range(1, max_chat_pages + 1):
        chats, more = await p.api.list_chats(page=page, size=50)
        p.report.requests += 1
        done = False
        for chat in chats:
            last = parse_time(chat.get("lastMessageAt"))
            if last is not None and last <= chats_mark:
                done = True  # most recent first: everything below is unchanged
                break
            changed.append(chat)
            if last is not None and last > newest:
                newest = last
        if done or not more:
            break
    else:
        log.warning("fanvue sync: more chats changed than one pass reads; older changes are skipped",
                    creator=p.creator, chats=len(changed))
    for chat in changed:
        user = chat.get("user") if isinstance(chat.get("user"), dict) else {}
        fan = str(user.get("uuid") or "")
        if not fan:
            continue
        ref = fan_ref(user)
        mark_name = f"chat:{fan}"
        fan_mark = parse_time(state.get(mark_name)) or chats_mark
        facts: list[Fact] = []
        opened: list[OpenPpv] = []
        newest_here = fan_mark
        for m in await p.messages_until(fan, fan_mark, max_pages=max_message_pages):
            at = sent_at(m)
            if at is not None and at > newest_here:
                newest_here = at
            try:
                if sender_of(m) == fan:
                    facts.append(fan_message_fact(m, fan, ref))
                    p.report.messages += 1
                elif (bought := purchase_fact(m, fan, ref)) is not None:
                    facts.append(bought)
                    p.report.purchases += 1
                elif (price := ppv_price(m)) is not None and at is not None and m.get("uuid"):
                    opened.append(OpenPpv(str(m["uuid"]), fan, price, at))
            except Invalid as e:
                p.report.skipped.append(f"chat {fan} message {m.get('uuid')}: {e.message}")
        p.report.new_events += await p.store.record(
            [f.event(p.creator) for f in facts], creator=p.creator,
            state={mark_name: newest_here.isoformat()}, open_ppv=opened)
    await p.store.record([], creator=p.creator, state={"chats": newest.isoformat()})


async def _sync_open_ppv(p: _Pass, max_message_pages: int) -> None:
    waiting = await p.store.open_ppv(p.creator, since=p.now - OPEN_PPV_WINDOW)
    by_fan: dict[str, list[OpenPpv]] = {}
    for o in waiting:
        by_fan.setdefault(o.fan_uuid, []).append(o)
    for fan, opens in by_fan.items():
        wanted = {o.message_uuid for o in opens}
        oldest = min(o.sent_at for o in opens)
        facts: list[Fact] = []
        closed: list[str] = []
        for m in await p.messages_until(fan, oldest - timedelta(seconds=1), max_pages=max_message_pages):
            uuid = str(m.get("uuid") or "")
            if uuid not in wanted:
                continue
            try:
                bought = purchase_fact(m, fan)
            except Invalid as e:
                p.report.skipped.append(f"chat {fan} message {uuid}: {e.message}")
                continue
            if bought is not None:
                facts.append(bought)
                closed.append(uuid)
                p.report.purchases += 1
        if facts:
            p.report.new_events += await p.store.record([f.event(p.creator) for f in facts], creator=p.creator,
                                                        closed_ppv=closed)


async def _sync_earnings(p: _Pass, state: dict[str, str], lookback: timedelta) -> None:
    mark = parse_time(state.get("earnings"))
    start = (mark - EARNINGS_OVERLAP) if mark else (p.now - lookback)
    cursor: str | None = None
    facts: list[Fact] = []
    while True:
        rows, cursor = await p.api.earnings(start, p.now, cursor=cursor, size=50)
        p.report.requests += 1
        for row in rows:
            try:
                facts.append(earnings_fact(row))
                p.report.earnings += 1
            except Invalid as e:
                p.report.skipped.append(f"earnings row: {e.message}")
        if not cursor:
            break
    p.report.new_events += await p.store.record([f.event(p.creator) for f in facts], creator=p.creator,
                                                state={"earnings": p.now.isoformat()})


async def sync_loop(store: SyncStore, api_for: Callable[[str], Awaitable[SyncApi | None]], *,
                    interval_s: float, stop: asyncio.Event, creators: Sequence[str] | None = None,
                    earnings_lookback: timedelta = timedelta(days=30), once: bool = False,
                    on_report: Callable[[SyncReport], Any] | None = None,
                    clock: Callable[[], datetime] = utcnow) -> list[SyncReport | BaseException]:
    """Pass after pass for every creator with Fanvue tokens (or `creators`), `interval_s` apart,
    until `stop` is set (or once). A failing creator is logged and retried on the next pass; with
    `once` its exception is returned in place of its report."""
    results: list[SyncReport | BaseException] = []
    while not stop.is_set():
        for creator in creators if creators is not None else await store.fanvue_creators():
            try:
                api = await api_for(creator)
                if api is None:
                    continue
                report = await sync_creator(creator, api, store, now=clock(), earnings_lookback=earnings_lookback)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - one creator's failure must not stop the others
                log.warning("fanvue sync pass failed", creator=creator, error=f"{type(e).__name__}: {e}")
                if once:
                    results.append(e)
                continue
            if once:
                results.append(report)
            if on_report is not None:
                on_report(report)
        if once:
            break
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
    return results
