"""`vaultline review list|approve|reject|retry-upload` and `vaultline status`: the review queue from a
terminal. They write to the running stack's PostgreSQL through the same use cases as the
admin API (handlers/review.py), so every decision lands in the outbox and the stack's relay
publishes it; nothing here talks to NATS."""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out
from vaultline.entrypoints.cli_common import print_json as _print_json
from vaultline.entrypoints.cli_common import with_pool as _with_pool
from vaultline.settings import Settings

review_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The review queue: list, approve, reject, retry failed uploads.")


def _settings(data_dir: Path | None) -> Settings:
    return connected(data_dir, need_db=True, need_nats=False)


def _reviewer() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


# --------------------------------------------------------------------------- list


@review_app.command("list")
def list_command(
    creator: str | None = typer.Option(None, "--creator", help="Only this persona."),
    status: str = typer.Option("in_review", "--status", help="Status to list; 'all' for every status."),
    flag: list[str] = typer.Option([], "--flag", help="needs_manual_crop | near_duplicate | fallback | face (repeatable)."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="At most this many items, newest first."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """List content (newest first): what waits for review, by default."""
    from vaultline.adapters.db import review as queries
    from vaultline.entrypoints.routes.review import item_json

    s = _settings(data_dir)

    async def work(pool: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = None
        while len(rows) < limit:
            page, cursor = await queries.list_content(
                pool, status=None if status == "all" else status, creator=creator, flags=flag,
                limit=min(queries.MAX_LIMIT, limit - len(rows)), cursor=cursor,
            )  # fmt: skip
            rows.extend(page)
            if cursor is None:
                break
        return rows

    try:
        rows = _with_pool(s, work)
    except ValueError as e:  # unknown status or flag
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    items = [item_json(r) for r in rows]
    if as_json:
        _print_json(items)
        return
    table = Table(title=f"{len(items)} item(s) · status {status}" + (f" · {creator}" if creator else ""))
    for col in ("id", "creator", "status", "file", "crop", "badges", "created"):
        table.add_column(col, overflow="fold")
    for i in items:
        crop = i["crop_mode_used"] or ""
        if i["cut_y"] is not None:
            crop += f" @{i['cut_y']}"
        table.add_row(i["id"], i["creator"], i["status"], i["original_filename"] or "", crop,
                      ", ".join(i["badges"]), i["created_at"][:19].replace("T", " "))  # fmt: skip
    out.print(table)


# --------------------------------------------------------------------------- decisions


def _decide_each(
    s: Settings, ids: list[str], decide: Callable[[Any, Any, dict[str, Any]], Awaitable[dict[str, Any]]], as_json: bool
) -> None:
    """Run `decide(uow, content_id, row)` for each id through the same loop as the API's bulk
    route (each id its own transaction); print one line per id; exit 1 when any failed."""
    from vaultline.adapters.db import PostgresUnitOfWorkFactory
    from vaultline.adapters.db import review as queries
    from vaultline.entrypoints.routes.review import item_json
    from vaultline.handlers import review

    async def work(pool: Any) -> list[dict[str, Any]]:
        uow = PostgresUnitOfWorkFactory(pool)

        async def one(cid: Any) -> dict[str, Any]:
            row = await queries.get_content(pool, cid)
            if row is None:
                raise review.NotFound(f"no content with id {cid}")
            return await decide(uow, cid, row)

        results = await review.decide_each(ids, one)
        # Same shape as the API's bulk results, plus the updated item.
        for r in results:
            row = r.pop("row", None)
            if row is not None:
                r["item"] = item_json(row)
        return results

    results = _with_pool(s, work)
    if as_json:
        _print_json(results)
    for r in results:
        if not r["ok"]:
            err.print(f"[red]{r['id']}[/red]: {r['error']} ({r['status']})")
        elif not as_json:
            item = r["item"]
            line = f"{item['status']} {item['id']}"
            if item["status"] == "approved":
                line += f" → {item['vault']}"
                if item["price_cents"] is not None:
                    line += f" at ${item['price_cents'] / 100:.2f}"
            out.print(line)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)

@review_app.command("approve")
def approve_command(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Content ids."),
    vault: str | None = typer.Option(None, "--vault", help="feed | ppv | archive [default: the creator's default_vault]."),
    price: int | None = typer.Option(
        None, "--price", help="Price in cents (ppv) [default: the creator's default_ppv_price_cents]."
    ),
    tags: str | None = typer.Option(None, "--tags", help="Comma-separated, e.g. lingerie,red [default: tags already set]."),
    category: str | None = typer.Option(None, "--category"),
    description: str | None = typer.Option(None, "--description"),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Approve images in review into a vault (each id its own decision)."""
    from vaultline.events import VAULTS
    from vaultline.handlers import review

    if vault is not None and vault not in VAULTS:
        err.print(f"[red]unknown vault {vault!r}[/red]; use one of {', '.join(VAULTS)}")
        raise typer.Exit(2)
    s = _settings(data_dir)
    reviewer = _reviewer()

    async def decide(uow: Any, cid: Any, row: dict[str, Any]) -> dict[str, Any]:
        creator = s.creator(row["creator"])
        decision: dict[str, Any] = {"vault": vault or creator.default_vault}
        if price is not None:
            decision["price_cents"] = price
        elif decision["vault"] == "ppv":
            decision["price_cents"] = creator.default_ppv_price_cents
        if tags is not None:
            decision["tags"] = [t for t in tags.split(",") if t.strip()]
        if category is not None:
            decision["category"] = category
        if description is not None:
            decision["description"] = description
        return await review.approve(uow, cid, decision, reviewer)

    _decide_each(s, ids, decide, as_json)


@review_app.command("reject")
def reject_command(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Content ids."),
    reason: str = typer.Option(..., "--reason", help="Why (1-500 characters); kept with the event."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Reject images in review (each id its own decision)."""
    from vaultline.handlers import review

    reviewer = _reviewer()
    _decide_each(_settings(data_dir), ids, lambda uow, cid, _row: review.reject(uow, cid, reason, reviewer), as_json)


@review_app.command("retry-upload")
def retry_upload_command(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Content ids whose upload failed."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Retry failed uploads; each resumes at the step that failed."""
    from vaultline.handlers import review

    reviewer = _reviewer()
    _decide_each(_settings(data_dir), ids, lambda uow, cid, _row: review.retry_upload(uow, cid, reviewer), as_json)


# --------------------------------------------------------------------------- status


def status_command(as_json: bool = JsonOut, data_dir: Path = DataDir) -> None:
    """How many images are at each stage, per creator, and watched files that were rejected."""
    from vaultline.adapters.db import review as queries
    from vaultline.adapters.db.problems import recent_problems
    from vaultline.domain.content import STATUSES

    s = _settings(data_dir)

    async def work(pool: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await queries.status_counts(pool), await recent_problems(pool, limit=20)

    counts, problems = _with_pool(s, work)
    stages = queries.stage_totals(counts)
    if as_json:
        _print_json({"counts": counts, "stages": stages, "problems": problems})
        return
    if problems:
        ptable = Table(title="problems: watched files that never became an image (newest first)")
        for col in ("when", "creator", "file", "moved to", "reason"):
            ptable.add_column(col)
        for p in problems:
            ptable.add_row(p["recorded_at"][:19], p["creator"], Path(p["path"]).name, p["moved_to"] or "", p["reason"])
        out.print(ptable)
    if not counts:
        out.print("no content yet")
        return
    columns = [st for st in STATUSES if stages.get(st)] + [st for st in stages if st not in STATUSES and stages[st]]
    table = Table(title="content by stage")
    table.add_column("creator")
    for st in columns:
        table.add_column(st, justify="right")
    per: dict[str, dict[str, int]] = {}
    for c in counts:
        per.setdefault(c["creator"], {})[c["status"]] = c["count"]
    for creator, by_status in per.items():
        table.add_row(creator, *(str(by_status.get(st, 0) or "") for st in columns))
    if len(per) > 1:
        table.add_row("[b]all[/b]", *(f"[b]{stages[st]}[/b]" for st in columns))
    out.print(table)


# `python -m vaultline.entrypoints.review_cli review ...|status ...` runs these without the
# main CLI (the same argv shape as `vaultline review ...` / `vaultline status`).
standalone = typer.Typer(no_args_is_help=True, add_completion=False)
standalone.add_typer(review_app, name="review")
standalone.command("status")(status_command)

if __name__ == "__main__":
    standalone()
