"""`vaultline inbox list|show|send|discard` and `vaultline chat simulate`.

The inbox commands read and write the running stack's PostgreSQL through the inbox use cases
(handlers/inbox.py), the same ones as the admin page. `inbox send` is a person's approval: it
is the only command that sends a chat message. `chat simulate` stands in for a fan on the
local platform: it queues a message.received in the outbox, the stack's relay publishes it
and the chat handler drafts replies."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from vaultline.domain.errors import UserError
from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out, print_json, with_pool
from vaultline.entrypoints.review_cli import _reviewer
from vaultline.settings import Settings

inbox_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="Fan conversations: read, approve (send), edit or discard reply drafts.")  # fmt: skip
chat_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Fan chat tools (local platform).")

CreatorOpt = typer.Option(None, "--creator", help="The persona (needed when the fan talks to several).")
FanArg = typer.Argument(..., help="The fan's id.")


def _settings(data_dir: Path | None) -> Settings:
    return connected(data_dir, need_db=True, need_nats=False)


def inbox_ports(s: Settings, pool: Any) -> Any:
    from vaultline.bootstrap import inbox_ports as build
    from vaultline.bootstrap import stored_platform_names

    return build(s, pool, stored_platform_names(pool, s.data_dir))


def _run(s: Settings, work: Any) -> Any:
    """Run `work(pool)`; a user error prints and exits 1 (nothing changed)."""

    async def guarded(pool: Any) -> Any:
        try:
            return await work(pool)
        except UserError as e:
            return e

    result = with_pool(s, guarded)
    if isinstance(result, UserError):
        err.print(f"[red]{result.message}[/red]")
        raise typer.Exit(1)
    return result


def _money(cents: int | None) -> str:
    return "" if cents is None else f"${cents / 100:.2f}"


@inbox_app.command("list")
def list_command(creator: str | None = CreatorOpt, as_json: bool = JsonOut, data_dir: Path = DataDir) -> None:
    """Conversations: unanswered first, then by what the fan spent."""
    from vaultline.handlers import inbox

    s = _settings(data_dir)
    rows = _run(s, lambda pool: inbox.list_conversations(inbox_ports(s, pool), creator))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{sum(r['unanswered'] for r in rows)} unanswered · {len(rows)} conversation(s)")
    for col in ("fan", "creator", "status", "spent", "last message", "waiting since"):
        table.add_column(col, overflow="fold")
    for r in rows:
        fan = r["fan_id"] + (f" ({r['display_name']})" if r["display_name"] else "")
        status = r["status"] or "answered"
        table.add_row(fan, r["creator"], status, _money(r["spend_cents"]), (r["last_text"] or "")[:60],
                      (r["waiting_since"] or "")[:19].replace("T", " "))  # fmt: skip
    out.print(table)


@inbox_app.command("show")
def show_command(fan: str = FanArg, creator: str | None = CreatorOpt, as_json: bool = JsonOut,
                 data_dir: Path = DataDir) -> None:  # fmt: skip
    """One conversation: history, what the fan spent, the drafts (numbered from 1), flags."""
    from vaultline.handlers import inbox

    s = _settings(data_dir)
    c = _run(s, lambda pool: inbox.show(inbox_ports(s, pool), fan, creator))
    if as_json:
        print_json(c)
        return
    name = f" ({c['display_name']})" if c["display_name"] else ""
    out.print(f"[bold]{c['fan_id']}{name}[/bold] · {c['creator']} · spent {_money(c['spend_cents'])} · "
              f"has {len(c['received'])} paid item(s)")  # fmt: skip
    for m in c["history"]:
        who = "fan" if m["direction"] == "in" else "you"
        out.print(f"  [dim]{(m['sent_at'] or '')[:16].replace('T', ' ')}[/dim] {who}: {m['text']}", highlight=False)
    out.print(f"status: {c['status'] or '-'}" + (f" — {c['reason']}" if c["reason"] else ""))
    for f in c["flags"]:
        out.print(f"  [yellow]flag:[/yellow] {f}", highlight=False)
    if c["drafts"]:
        out.print("templates (the model is not available):" if c["drafts_are_templates"] else "drafts:")
        for d in c["drafts"]:
            out.print(f"  [{d['n']}] {d['text']}", highlight=False)
    if c["offer"]:
        o = c["offer"]
        out.print(f"offer: {o['content_id']} at {_money(o['price_cents'])}" + (f" ({o['category']})" if o.get("category") else ""))
    rs = c["reply_seconds"]
    if rs["count"]:
        out.print(f"time to reply: last {rs['last']} s, average {rs['average']} s over {rs['count']}")


@inbox_app.command("send")
def send_command(
    fan: str = FanArg,
    draft: int | None = typer.Option(None, "--draft", "-d", help="Draft number (from `inbox show`)."),
    edit: str | None = typer.Option(None, "--edit", help="Send this text instead (the edited draft, or typed by hand)."),
    no_offer: bool = typer.Option(False, "--no-offer", help="Send the text without the suggested PPV offer."),
    creator: str | None = CreatorOpt,
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Approve a draft (edited or not) and send it to the fan: the only way a reply is sent."""
    from vaultline.adapters.platforms import PlatformResolver
    from vaultline.bootstrap import chat_sender
    from vaultline.handlers import inbox

    if draft is None and edit is None:
        err.print("[red]choose a draft with --draft N, or type the reply with --edit TEXT[/red]")
        raise typer.Exit(2)
    s = _settings(data_dir)
    by = _reviewer()

    async def work(pool: Any) -> dict[str, Any]:
        platforms = PlatformResolver(pool, s.data_dir)
        try:
            sender = chat_sender(pool, platforms)
            return await inbox.send(inbox_ports(s, pool), sender, fan, draft=draft, edit=edit, approved_by=by,
                                    creator=creator, with_offer=not no_offer)  # fmt: skip
        finally:
            await platforms.close()

    try:
        res = _run(s, work)
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as e:  # the platform failed: nothing was recorded as sent, the drafts are kept
        err.print(f"[red]could not send[/red]: {e}")
        raise typer.Exit(1) from None
    if as_json:
        print_json(res)
        return
    offer = f" with offer {res['offer']['content_id']} at {_money(res['offer']['price_cents'])}" if res["offer"] else ""
    out.print(f"sent to {res['fan_id']} on {res['platform']}{offer}: {res['text']}", highlight=False)


@inbox_app.command("discard")
def discard_command(fan: str = FanArg, creator: str | None = CreatorOpt, as_json: bool = JsonOut,
                    data_dir: Path = DataDir) -> None:  # fmt: skip
    """Discard the drafts of a conversation: nothing is sent, the decision is recorded."""
    from vaultline.handlers import inbox

    s = _settings(data_dir)
    res = _run(s, lambda pool: inbox.discard(inbox_ports(s, pool), fan, by=_reviewer(), creator=creator))
    if as_json:
        print_json(res)
        return
    out.print(f"discarded the drafts for {res['fan_id']}")


@chat_app.command("simulate")
def simulate_command(
    fan: str = typer.Argument(..., help="A fan id (letters, digits, - and _)."),
    text: str = typer.Option(..., "--text", "-t", help="What the fan writes."),
    creator: str | None = typer.Option(None, "--creator", help="The persona written to [default: the default creator]."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """A fan writes on the local platform: queues message.received (the chat handler drafts)."""
    from pydantic import ValidationError

    from vaultline.adapters.db.chat import queue_event
    from vaultline.events import FanRef, MessageReceived, new_event, utcnow

    s = _settings(data_dir)
    slug = creator or s.configured_default_creator()
    try:
        event = new_event(
            "message.received", creator=slug, key=fan,
            payload=MessageReceived(platform="local", fan_id=fan, message_uuid=str(uuid.uuid4()), text=text,
                                    sent_at=utcnow(), fan=FanRef(handle=fan), source="local"),
        )  # fmt: skip
    except ValidationError as e:
        from vaultline.handlers.review import plain_errors

        err.print(f"[red]invalid message[/red]: {plain_errors(e)}")
        raise typer.Exit(2) from None
    with_pool(s, lambda pool: queue_event(pool, event))
    if as_json:
        print_json({"event_id": str(event.event_id), "creator": slug, "fan_id": fan, "subject": event.subject})
        return
    sys.stdout.write(f"{fan} wrote to {slug}: event {event.event_id}; see `vaultline inbox show {fan}`\n")
