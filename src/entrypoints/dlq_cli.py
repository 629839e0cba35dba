"""`vaultline dlq list|show|retry|drop`: the dead letters (messages a handler gave up on).

retry republishes the original message under a new message id; handlers are idempotent by
event id, so an event that had in fact been processed changes nothing the second time.
Exit codes: 0 done, 1 no such dead letter / not possible in its state, 2 no running stack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from vaultline.domain.errors import UserError
from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out, with_pool
from vaultline.entrypoints.cli_common import print_json as _print_json

dlq_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Dead letters: list, show, retry, drop.")

IdArg = typer.Argument(..., help="Dead letter id (from `vaultline dlq list`).")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    outp: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, (uuid.UUID,)):
            v = str(v)
        elif isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, (bytes, bytearray, memoryview)):
            raw = bytes(v)
            try:
                v = json.loads(raw)
            except ValueError:
                v = raw.decode("utf-8", "replace")
        outp[k] = v
    return outp


def _run(data_dir: Path | None, work: Callable[[Any, Any], Awaitable[Any]], *, need_nats: bool = False) -> Any:
    """Run `work(store, settings)` against the running stack's database; user errors exit 1."""
    from vaultline.adapters.db.dead_letters import PostgresDeadLetterStore

    s = connected(data_dir, need_db=True, need_nats=need_nats)
    try:
        return with_pool(s, lambda pool: work(PostgresDeadLetterStore(pool), s))
    except UserError as e:
        err.print(f"[red]{e.message}[/red]")
        raise typer.Exit(1) from None


@dlq_app.command("list")
def list_command(
    as_json: bool = JsonOut,
    include_dropped: bool = typer.Option(False, "--all", help="Include dropped dead letters."),
    data_dir: Path = DataDir,
) -> None:
    """Dead letters, newest first."""

    async def work(store: Any, _s: Any) -> list[dict[str, Any]]:
        return await store.list(include_dropped=include_dropped)

    rows = [_jsonable(r) for r in _run(data_dir, work)]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print("no dead letters")
        return
    table = Table(title="dead letters (newest first)")
    for col in ("id", "consumer", "reason", "subject", "tries", "last error", "recorded", "state"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = "dropped" if r["dropped_at"] else ("retried" if r["redriven_at"] else "")
        table.add_row(str(r["id"]), r["consumer"], r["reason"], r["subject"] or "", str(r["deliveries"] or ""),
                      (r["last_error"] or "")[:80], r["recorded_at"][:19].replace("T", " "), state)  # fmt: skip
    out.print(table)


@dlq_app.command("show")
def show_command(dead_letter_id: int = IdArg, data_dir: Path = DataDir) -> None:
    """One dead letter with its original message (JSON)."""
    from vaultline.domain.errors import NotFound

    async def work(store: Any, _s: Any) -> dict[str, Any]:
        row = await store.get(dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter with id {dead_letter_id}")
        return row

    _print_json(_jsonable(_run(data_dir, work)))


@dlq_app.command("retry")
def retry_command(dead_letter_id: int = IdArg, as_json: bool = JsonOut, data_dir: Path = DataDir) -> None:
    """Republish the original message under a new message id."""
    from vaultline.adapters.bus.broker import JetStreamPublisher, make_broker
    from vaultline.handlers import dlq

    async def work(store: Any, s: Any) -> dict[str, Any]:
        broker = make_broker(s.nats_url)
        await broker.connect()
        try:
            publisher = JetStreamPublisher(broker)
            return await dlq.retry(store, publisher.publish_raw, dead_letter_id)
        finally:
            await broker.stop()

    row = _jsonable(_run(data_dir, work, need_nats=True))
    if as_json:
        _print_json(row)
    else:
        out.print(f"dead letter {dead_letter_id} republished to {row['subject']} as message {row['redrive_msg_id']}")


@dlq_app.command("drop")
def drop_command(dead_letter_id: int = IdArg, data_dir: Path = DataDir) -> None:
    """Hide a dead letter from the list (kept for the audit trail)."""
    from vaultline.handlers import dlq

    async def work(store: Any, _s: Any) -> None:
        await dlq.drop(store, dead_letter_id)

    _run(data_dir, work)
    out.print(f"dead letter {dead_letter_id} dropped")
