"""`vaultline send`, `suggest-ppv`, `fans list|show|simulate-purchase`, `sales list`.

They work on the running stack's PostgreSQL (and the creator's platform for `send`); events go
through the outbox, so nothing here talks to NATS. Exit codes: 0 ok, 1 failed, 2 bad input or
no stack, 3 refused (the fan already has that content or a near-copy of it)."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from vaultline.domain.errors import Conflict, UserError
from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out, with_pool
from vaultline.settings import Settings

fans_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Fans: who they are, what they received and bought.")
sales_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Sales: purchases, tips, subscriptions.")

CreatorOpt = typer.Option(None, "--creator", help="Persona slug [default: the default creator].")


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _run(s: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(pool)`; user errors print their message and exit 3 (refused) / 2 (bad input)."""
    try:
        return with_pool(s, work)
    except Conflict as e:
        err.print(e.message, style="red", markup=False)
        raise typer.Exit(3) from None
    except UserError as e:
        err.print(e.message, style="red", markup=False)
        raise typer.Exit(2 if e.status in (400, 404) else 1) from None


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def _money(cents: int | None) -> str:
    return "free" if not cents else f"${cents / 100:.2f}"


def _creator(s: Settings, creator: str | None) -> str:
    c = creator or s.default_creator
    s.creator(c)  # validates the slug
    return c


# --------------------------------------------------------------------------- send


def send_command(
    content_ids: list[str] = typer.Argument(..., metavar="CONTENT_ID...", help="Uploaded content to send in one message."),
    to: str = typer.Option(..., "--to", help="The fan: the platform's fan uuid (any name on the local platform)."),
    price: int | None = typer.Option(None, "--price", help="PPV price in cents (>= 300); omit for a free message."),
    text: str | None = typer.Option(None, "--text", help="Message text."),
    force: bool = typer.Option(False, "--force", help="Send even if the fan has it (or a near-copy); needs --reason."),
    reason: str | None = typer.Option(None, "--reason", help="Why a duplicate is sent anyway (recorded in the event)."),
    creator: str | None = CreatorOpt,
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Send content to a fan, exactly once. Refused (exit 3) when the fan already has it or a near-copy."""
    from vaultline.adapters.db.sends import PostgresSendStore
    from vaultline.adapters.platforms import PlatformResolver
    from vaultline.handlers import sends

    s = connected(data_dir, need_db=True, need_nats=False)
    slug = _creator(s, creator)

    async def work(pool: Any) -> Any:
        req = sends.SendRequest(
            creator=slug, fan_id=to, content_ids=sends.parse_content_ids(content_ids), price_cents=price,
            text=text, force=force, reason=reason, sent_by=_who(),
        )  # fmt: skip
        resolver = PlatformResolver(pool, s.data_dir, s.fanvue)
        try:
            return await sends.send(req, store=PostgresSendStore(pool), platform=await resolver(slug))
        finally:
            await resolver.close()

    result = _run(s, work)
    if as_json:
        _dump(result.as_json())
        return
    forced = f" (forced: {result.reason})" if result.forced else ""
    out.print(
        f"sent {len(result.content_ids)} content(s) to {result.fan_id} on {result.platform} at {_money(result.price_cents)}"
        f" · message {result.message_uuid}{forced}",
        markup=False,
    )


def suggest_command(
    fan: str = typer.Argument(..., help="The fan's platform uuid (or local name)."),
    limit: int = typer.Option(10, "--limit", "-n", min=1),
    creator: str | None = CreatorOpt,
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Uploaded PPV content this fan has not received (nor a near-copy of), best first, with a price."""
    from vaultline.adapters.db.sales import PostgresSendReads
    from vaultline.adapters.platforms import PlatformResolver
    from vaultline.handlers import sends

    s = connected(data_dir, need_db=True, need_nats=False)
    slug = _creator(s, creator)

    async def work(pool: Any) -> Any:
        platform = "fanvue" if await PlatformResolver(pool, s.data_dir, s.fanvue).has_fanvue(slug) else "local"
        return await sends.suggest_ppv(
            PostgresSendReads(pool), creator=slug, platform=platform, fan_id=fan,
            tiers=s.creator(slug).price_tiers(), limit=limit,
        )  # fmt: skip

    found = _run(s, work)
    rows = [
        {"content_id": str(x.content_id), "score": x.score, "price_cents": x.price_cents, "reasons": list(x.reasons)}
        for x in found
    ]
    if as_json:
        _dump({"fan_id": fan, "creator": slug, "suggestions": rows})
        return
    if not rows:
        out.print(f"nothing left to offer {fan}: every uploaded PPV image (or a near-copy) was sent already", markup=False)
        return
    table = Table(title=f"PPV for {fan}")
    for col in ("content", "price", "score", "why"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["content_id"], _money(r["price_cents"]), f"{r['score']:.2f}", "; ".join(r["reasons"]))
    out.print(table)


# --------------------------------------------------------------------------- fans


def _fan_json(f: dict[str, Any]) -> dict[str, Any]:
    keys = ("creator", "platform", "fan_id", "handle", "display_name", "first_seen_at", "last_message_at",
            "lifetime_spend_cents", "purchases", "last_purchase_at", "followed_at", "subscribed_at", "tags", "notes")  # fmt: skip
    out_ = {k: f.get(k) for k in keys}
    if "received" in f:
        out_["received"] = f["received"]
    return json.loads(json.dumps(out_, default=_jsonable))


def _send_json(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "content_id", "message_uuid", "price_cents", "text", "status", "forced", "reason", "reserved_at",
            "sent_at", "purchased_at", "error", "original_filename", "category", "tags")  # fmt: skip
    return json.loads(json.dumps({k: r.get(k) for k in keys}, default=_jsonable))


@fans_app.command("list")
def fans_list(
    creator: str | None = typer.Option(None, "--creator", help="Only this persona."),
    limit: int = typer.Option(200, "--limit", "-n", min=1),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Fans by lifetime spend."""
    from vaultline.adapters.db import sales as q

    s = connected(data_dir, need_db=True, need_nats=False)
    fans = [_fan_json(f) for f in _run(s, lambda pool: q.list_fans(pool, creator, limit))]
    if as_json:
        _dump(fans)
        return
    table = Table(title=f"{len(fans)} fan(s)")
    for col in ("fan", "handle", "creator", "spend", "purchases", "received", "last message"):
        table.add_column(col, overflow="fold")
    for f in fans:
        table.add_row(f["fan_id"], f["handle"] or "", f["creator"], _money(f["lifetime_spend_cents"]), str(f["purchases"]),
                      str(f.get("received", 0)), (f["last_message_at"] or "")[:16])  # fmt: skip
    out.print(table)


@fans_app.command("show")
def fans_show(
    fan: str = typer.Argument(..., help="The fan's platform uuid (or local name)."),
    creator: str | None = typer.Option(None, "--creator"),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """One fan: who they are, every image they received, what they bought."""
    from vaultline.adapters.db import sales as q
    from vaultline.domain.errors import NotFound

    s = connected(data_dir, need_db=True, need_nats=False)

    async def work(pool: Any) -> Any:
        f = await q.get_fan(pool, fan, creator)
        if f is None:
            raise NotFound(f"no fan {fan}" + (f" for {creator}" if creator else ""))
        return f, await q.fan_sends(pool, f["creator"], f["platform"], f["fan_id"])

    f, sent = _run(s, work)
    data = {**_fan_json(f), "sends": [_send_json(r) for r in sent]}
    if as_json:
        _dump(data)
        return
    out.print(
        f"{data['fan_id']} ({data['handle'] or 'no handle'}) · {data['creator']} on {data['platform']} · "
        f"spent {_money(data['lifetime_spend_cents'])} in {data['purchases']} purchase(s)",
        markup=False,
    )
    table = Table(title="received")
    for col in ("content", "status", "price", "sent", "bought", "message"):
        table.add_column(col, overflow="fold")
    for r in data["sends"]:
        table.add_row(r["content_id"], r["status"] + (" (forced)" if r["forced"] else ""), _money(r["price_cents"]),
                      (r["sent_at"] or "")[:16], (r["purchased_at"] or "")[:16], r["message_uuid"] or "")  # fmt: skip
    out.print(table)


@fans_app.command("simulate-purchase")
def simulate_purchase(
    message_uuid: str = typer.Argument(..., help="A PPV message sent on the local platform (see `fans show`)."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Local platform: the fan buys a PPV message (sale.recorded, source local)."""
    from vaultline.adapters.db.sends import PostgresSendStore
    from vaultline.handlers import sends

    s = connected(data_dir, need_db=True, need_nats=False)
    event = _run(s, lambda pool: sends.simulate_purchase(PostgresSendStore(pool), message_uuid))
    if as_json:
        _dump({"event_id": str(event.event_id), "sale": event.payload.model_dump(mode="json")})
        return
    p = event.payload
    out.print(f"purchase recorded: {p.fan_id} bought message {message_uuid} for {_money(p.gross_cents)}", markup=False)


# --------------------------------------------------------------------------- sales


@sales_app.command("list")
def sales_list(
    unmatched: bool = typer.Option(False, "--unmatched", help="Only purchases matched to no send."),
    creator: str | None = typer.Option(None, "--creator"),
    limit: int = typer.Option(500, "--limit", "-n", min=1),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Sales, newest first, each counted once whichever sources reported it."""
    from vaultline.adapters.db import sales as q

    s = connected(data_dir, need_db=True, need_nats=False)
    rows = _run(s, lambda pool: q.list_sales(pool, unmatched=unmatched, creator=creator, limit=limit))
    keys = ("id", "creator", "platform", "kind", "gross_cents", "net_cents", "currency", "fan_id", "route_uuid",
            "message_uuid", "post_uuid", "occurred_at", "source", "sources", "matched_send_id", "matched_content_id",
            "matched_message_uuid", "dedupe_key")  # fmt: skip
    data = [json.loads(json.dumps({k: r.get(k) for k in keys}, default=_jsonable)) for r in rows]
    if as_json:
        _dump(data)
        return
    table = Table(title=f"{len(data)} sale(s)" + (" not matched to a send" if unmatched else ""))
    for col in ("when", "kind", "gross", "fan", "sources", "content"):
        table.add_column(col, overflow="fold")
    for r in data:
        table.add_row(r["occurred_at"][:16], r["kind"], _money(r["gross_cents"]), r["fan_id"] or "",
                      ",".join(r["sources"]), r["matched_content_id"] or "—")  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("send")(send_command)
    app.command("suggest-ppv")(suggest_command)
    app.add_typer(fans_app, name="fans")
    app.add_typer(sales_app, name="sales")
