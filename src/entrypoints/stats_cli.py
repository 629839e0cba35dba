"""`vaultline stats` and `vaultline report`: the analytics aggregates as terminal tables,
JSON, CSV, or a dated Markdown/HTML report. Both read PostgreSQL only."""

from __future__ import annotations

import asyncio
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import typer

from vaultline.domain.analytics import DEFAULT_DAYS, Stats, window
from vaultline.domain.errors import Invalid
from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out
from vaultline.entrypoints.stats_views import period_bounds, print_tables, to_csv, to_html, to_markdown
from vaultline.events import SLUG_RE
from vaultline.settings import Settings

def today() -> date:
    return datetime.now(timezone.utc).date()


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{option} must be a date like 2026-11-30[/red], not {value!r}")
        raise typer.Exit(2) from None


def _creator(value: str | None) -> str | None:
    if value is not None and not SLUG_RE.match(value):
        err.print(f"[red]--creator must be a creator slug ([a-z0-9_-])[/red], not {value!r}")
        raise typer.Exit(2)
    return value


def _run(coro: object) -> object:
    """Run a database call; a missing migration or an unreachable database is a clear exit 1."""
    import asyncpg

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except asyncpg.UndefinedTableError:
        err.print("[red]the analytics tables do not exist[/red]: run `vaultline migrate` (migration 0009)")
    except (OSError, asyncpg.PostgresError) as e:
        err.print(f"[red]could not read the database[/red]: {e}")
    raise typer.Exit(1)


async def fetch_stats(s: Settings, *, creator: str | None, since: date, until: date, top: int = 10) -> Stats:
    from vaultline.adapters.db import create_pool
    from vaultline.adapters.db.analytics import load_stats

    assert s.database_url
    pool = await create_pool(s.database_url, max_size=2)
    try:
        return await load_stats(pool, creator=creator, since=since, until=until, top=top)
    finally:
        await pool.close()


async def rebuild(s: Settings) -> None:
    """Rebuild the aggregates by replay: stop the `analytics` consumer's deliveries (delete it),
    empty the analytics tables and its processed_events rows, recreate the consumer from the
    start of the stream. A running analytics worker carries on with the new consumer."""
    from vaultline.adapters.bus.provision import provision
    from vaultline.adapters.bus.stream import connect
    from vaultline.adapters.bus.topology import CONSUMERS, EVENTS_STREAM
    from vaultline.adapters.db import create_pool
    from vaultline.adapters.db.analytics import reset

    assert s.nats_url and s.database_url
    nc, js = await connect(s.nats_url)
    pool = await create_pool(s.database_url, max_size=2)
    try:
        try:
            await js.delete_consumer(EVENTS_STREAM, "analytics")
        except Exception:  # not provisioned yet
            pass
        await reset(pool)
        await provision(js, replicas=s.stream_replicas, default_max_deliver=s.max_deliver,
                        consumers={"analytics": CONSUMERS["analytics"]})  # fmt: skip
    finally:
        await pool.close()
        await nc.close()


def stats_command(
    creator: str | None = typer.Option(None, "--creator", help="One creator (default: all of them)."),
    since: str | None = typer.Option(None, "--since", help=f"First day, YYYY-MM-DD (UTC) (default: {DEFAULT_DAYS} days ago)."),
    until: str | None = typer.Option(None, "--until", help="Last day, inclusive (default: today)."),
    top: int = typer.Option(10, "--top", min=1, max=1000, help="How many top content and top fans."),
    as_json: bool = JsonOut,
    as_csv: bool = typer.Option(False, "--csv", help="section,key,metric,value rows: the same numbers as --json."),
    rebuild_all: bool = typer.Option(
        False, "--rebuild", help="Rebuild every aggregate by replaying the stream (the analytics worker does the work)."
    ),
    data_dir: Path = DataDir,
) -> None:
    """Revenue, conversion, the image funnel, replies, top content and fans for a period."""
    if rebuild_all:
        _run(rebuild(connected(data_dir, need_db=True)))
        err.print("analytics: aggregates emptied; the analytics consumer replays the stream from its start")
        return
    if as_json and as_csv:
        err.print("[red]--json and --csv exclude each other[/red]")
        raise typer.Exit(2)
    try:
        first, last = window(_date(since, "--since"), _date(until, "--until"), today())
    except Invalid as e:
        err.print(f"[red]{e.message}[/red]")
        raise typer.Exit(2) from None
    s = connected(data_dir, need_db=True, need_nats=False)
    stats: Stats = _run(fetch_stats(s, creator=_creator(creator), since=first, until=last, top=top))  # type: ignore[assignment]
    if as_json:
        sys.stdout.write(stats.model_dump_json(indent=2) + "\n")
    elif as_csv:
        sys.stdout.write(to_csv(stats))
    else:
        print_tables(stats, out)


def report_command(
    period: str = typer.Option("week", "--period", help="day | week (ISO, Monday to Sunday) | month."),
    on: str | None = typer.Option(None, "--date", help="A day inside the period (default: today, UTC)."),
    creator: str | None = typer.Option(None, "--creator", help="One creator (default: all of them)."),
    out_file: Path | None = typer.Option(None, "--out", help="Write here; .html gives HTML, anything else Markdown."),
    fmt: str | None = typer.Option(None, "--format", help="md | html (default: from the --out suffix, else md)."),
    data_dir: Path = DataDir,
) -> None:
    """A dated report of one day, week or month (Markdown or HTML), with the figures of `stats`."""
    if period not in ("day", "week", "month"):
        err.print(f"[red]--period must be day, week or month[/red], not {period!r}")
        raise typer.Exit(2)
    fmt = fmt or ("html" if out_file is not None and out_file.suffix.lower() in (".html", ".htm") else "md")
    if fmt not in ("md", "html"):
        err.print(f"[red]--format must be md or html[/red], not {fmt!r}")
        raise typer.Exit(2)
    first, last, label = period_bounds(period, _date(on, "--date") or today())  # type: ignore[arg-type]
    s = connected(data_dir, need_db=True, need_nats=False)
    stats: Stats = _run(fetch_stats(s, creator=_creator(creator), since=first, until=last))  # type: ignore[assignment]
    title = f"vaultline {period} report {label}" + (f" — {creator}" if creator else "")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = to_html(stats, title, generated) if fmt == "html" else to_markdown(stats, title, generated)
    if out_file is None:
        sys.stdout.write(text)
        return
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text)
    except OSError as e:
        err.print(f"[red]could not write {out_file}[/red]: {e}")
        raise typer.Exit(1) from None
    err.print(f"wrote {out_file} ({title})")
