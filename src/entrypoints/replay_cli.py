"""`vaultline replay` (rebuild the projections from the stream, re-run one handler) and
`vaultline audit export` (a window of events as JSON lines for an auditor)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out, print_json

audit_app = typer.Typer(no_args_is_help=True, help="The audit trail for an auditor.")


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"[red]{option}[/red]: not an ISO time: {value!r} (e.g. 2026-11-30T14:00:00Z)")
        raise typer.Exit(2) from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _print_diffs(tables: dict[str, Any], limit: int = 20) -> None:
    table = Table(title="rebuilt vs live")
    for col in ("table", "live rows", "rebuilt rows", "differences"):
        table.add_column(col)
    for name, t in tables.items():
        n = len(t.differences)
        table.add_row(name, str(t.live_rows), str(t.rebuilt_rows), f"[red]{n}[/red]" if n else "0")
    out.print(table)
    for name, t in tables.items():
        for d in t.differences[:limit]:
            key = ", ".join(f"{k}={v}" for k, v in d["key"].items())
            if d["kind"] == "changed":
                cols = "; ".join(f"{c}: live={v['live']!r} rebuilt={v['rebuilt']!r}" for c, v in d["columns"].items())
                out.print(f"[red]{name}[/red] {key}: {cols}", highlight=False)
            elif d["kind"] == "only_live":
                out.print(f"[red]{name}[/red] {key}: in the live table, not derivable from events", highlight=False)
            else:
                out.print(f"[red]{name}[/red] {key}: derived from events, missing from the live table", highlight=False)
        if len(t.differences) > limit:
            out.print(f"{name}: ... {len(t.differences) - limit} more (use --json)")


def replay_command(
    rebuild_: bool = typer.Option(False, "--rebuild", help="Rebuild every projection into a fresh schema and compare."),
    swap_: bool = typer.Option(False, "--swap", help="With --rebuild: make the rebuilt schema live (old one kept)."),
    keep: bool = typer.Option(False, "--keep", help="With --rebuild: keep the rebuilt schema (default: dropped)."),
    handler: str | None = typer.Option(None, "--handler", help="Re-run one handler (tracker, sales, ...)."),
    from_seq: int | None = typer.Option(None, "--from-seq", min=1, help="With --handler: from this stream sequence."),
    since: str | None = typer.Option(None, "--since", help="With --handler: from this time (ISO 8601)."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Rebuild the projections from the EVENTS stream (exit 0 only when they equal the live
    tables), or re-run one handler from a point (idempotent: done events are skipped)."""
    from vaultline.entrypoints import replay

    if rebuild_ == (handler is not None):
        err.print("[red]say what to replay[/red]: --rebuild, or --handler NAME with --from-seq N or --since TIME")
        raise typer.Exit(2)
    if (swap_ or keep) and not rebuild_:
        err.print("[red]--swap and --keep go with --rebuild[/red]")
        raise typer.Exit(2)
    s = connected(data_dir, need_db=True)
    if handler is not None:
        if (from_seq is None) == (since is None):
            err.print("[red]--handler needs exactly one of --from-seq N or --since TIME[/red]")
            raise typer.Exit(2)
        try:
            r = asyncio.run(replay.replay_handler(s, handler, from_seq=from_seq, since=_time(since, "--since")))
        except ValueError as e:
            err.print(f"[red]{e}[/red]")
            raise typer.Exit(2) from None
        if as_json:
            print_json(r.as_json())
        else:
            out.print(f"{handler}: {r.seen} events seen, {r.applied} applied, {r.skipped} skipped (already done), "
                      f"{len(r.failed)} failed")  # fmt: skip
            for f in r.failed:
                err.print(f"[red]seq {f['seq']}[/red]: {f['error']}", highlight=False)
        raise typer.Exit(1 if r.failed else 0)

    with Progress(TextColumn("rebuild"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                  TimeRemainingColumn(), console=err, transient=as_json) as bar:  # fmt: skip
        task = bar.add_task("rebuild", total=None)
        result = asyncio.run(replay.rebuild(s, keep=keep or swap_,  # a failed rebuild leaves nothing behind
                                            progress=lambda done, total: bar.update(task, completed=done, total=total)))
    for f in result.failed:
        err.print(f"[yellow]seq {f['seq']} not projected[/yellow] ({f['type']}): {f['error']}", highlight=False)
    if as_json:
        print_json(result.as_json())
    else:
        out.print(f"{result.events} events replayed into schema {result.schema}")
        _print_diffs(result.tables)
    if swap_:
        backup = asyncio.run(replay.swap_live(s, result.schema))
        err.print(f"the rebuilt schema is live as {result.live}; the old tables are kept in schema [bold]{backup}[/bold] "
                  "(restart running workers: their prepared statements still point at the old tables)")  # fmt: skip
    elif not keep:
        asyncio.run(replay.drop(s, result.schema))
    else:
        err.print(f"rebuilt schema kept: {result.schema}")
    raise typer.Exit(0 if result.differences == 0 else 1)


@audit_app.command("export")
def audit_export(
    since: str = typer.Option(..., "--since", help="From this stored time (ISO 8601, inclusive)."),
    until: str = typer.Option(..., "--until", help="To this stored time (ISO 8601, exclusive)."),
    creator: str | None = typer.Option(None, "--creator"),
    data_dir: Path = DataDir,
) -> None:
    """Every event stored in [--since, --until) as one JSON line: stream seq, subject, stored
    time and the envelope. `vaultline audit export --since ... --until ... > audit.jsonl`"""
    from vaultline.entrypoints.cli import _event_row
    from vaultline.entrypoints.replay import audit_events

    start, end = _time(since, "--since"), _time(until, "--until")
    assert start is not None and end is not None
    if end <= start:
        err.print("[red]--until must be after --since[/red]")
        raise typer.Exit(2)
    s = connected(data_dir)

    async def main() -> int:
        n = 0
        async for se in audit_events(s, since=start, until=end, creator=creator):
            sys.stdout.write(json.dumps(_event_row(se)) + "\n")
            n += 1
        return n

    n = asyncio.run(main())
    err.print(f"{n} events exported")


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
    app.add_typer(audit_app, name="audit")
