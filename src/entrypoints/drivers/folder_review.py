"""Review by moving files: an operator drags `<creator>/3_review/<name>` into
`<creator>/4_approved/<vault>/` or `<creator>/rejected/` and that is the decision.

For every creator folder under the library root (new ones are picked up by a rescan) this
watches `4_approved/` and `rejected/` and, for each complete image whose name carries a
content id that is in review, makes the same decision the API would (handlers/review.py):
vault from the folder name, ppv priced at the creator's default_ppv_price_cents, rejections
with the reason "moved to rejected/ by hand", reviewer "folder".

Anything else is left alone and logged, never an error: foreign files, a folder that is not
a vault, a file put under another creator, and content that is not in review, which includes
the library handler's own moves after an API or CLI decision (the row is decided in the same
transaction as the event, before the file moves)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from vaultline.domain import library
from vaultline.events import SLUG_RE, VAULTS
from vaultline.handlers import review
from vaultline.handlers.ports import UnitOfWorkFactory
from vaultline.settings import Settings

log = structlog.get_logger("vaultline.folder_review")

REVIEWER = "folder"
REJECT_REASON = "moved to rejected/ by hand"
STAGES = frozenset({library.RAW, library.CROPPED, library.REVIEW, library.APPROVED, library.UPLOADED, library.REJECTED})


@dataclass(frozen=True)
class Outcome:
    """What became of one file: action "approved" | "rejected" | "ignored", and why."""

    path: Path
    action: str
    content_id: str | None = None
    reason: str = ""
    # Ignored because it is already decided: the normal state of every file in these folders
    # once filed, so it is logged at debug level only.
    decided: bool = False


OnOutcome = Callable[[Outcome], Any]


def creator_folders(root: Path) -> list[Path]:
    """Folders under the library root that are a creator's library: a slug name holding at
    least one stage folder (so unrelated folders someone keeps there are not touched)."""
    if not root.is_dir():
        return []
    found = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and SLUG_RE.match(d.name) and any((d / s).is_dir() for s in STAGES):
            found.append(d)
    return found


def _prepare(creator_dir: Path) -> list[Path]:
    # The drop targets exist before the operator looks for them; mkdir is idempotent.
    for vault in VAULTS:
        (creator_dir / library.APPROVED / vault).mkdir(parents=True, exist_ok=True)
    (creator_dir / library.REJECTED).mkdir(parents=True, exist_ok=True)
    return [creator_dir / library.APPROVED, creator_dir / library.REJECTED]


async def decide_file(path: Path, *, root: Path, uow: UnitOfWorkFactory, settings: Settings) -> Outcome:
    """The decision a file at `path` (inside `root`) stands for, made at most once."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return Outcome(path, "ignored", reason="outside the library root")
    creator, name = rel.split("/", 1)[0], library.name_of(rel)
    cid = library.content_id_from_name(name)
    if cid is None:
        # rejected/ also holds watched files that never became an image: resting, not a decision.
        resting = (library.stage_of(rel) or (None, None))[0] == library.REJECTED
        return Outcome(path, "ignored", reason="not a library file name (no content id)", decided=resting)
    stage, vault = library.stage_of(rel) or (None, None)
    if stage == library.APPROVED and vault is not None:
        if vault not in VAULTS:
            return Outcome(path, "ignored", str(cid), f"{vault!r} is not a vault folder ({', '.join(VAULTS)})")
        action = "approved"
    elif stage == library.REJECTED and vault is None:
        action = "rejected"
    else:
        where = "/".join(rel.split("/")[1:-1])
        return Outcome(path, "ignored", str(cid), f"{where}/ is not a decision folder (4_approved/<vault>/ or rejected/)")

    async with uow() as tx:
        row = await tx.content.get(cid)
    if row is None:
        return Outcome(path, "ignored", str(cid), "no such content")
    if row["creator"] != creator:
        return Outcome(path, "ignored", str(cid), f"belongs to creator {row['creator']}, not {creator}")
    try:
        if vault is not None:
            decision: dict[str, Any] = {"vault": vault}
            if vault == "ppv":
                decision["price_cents"] = settings.creator(creator).default_ppv_price_cents
            await review.approve(uow, cid, decision, REVIEWER)
        else:
            await review.reject(uow, cid, REJECT_REASON, REVIEWER)
    except review.Conflict as e:  # already decided, e.g. the library handler's own move
        return Outcome(path, "ignored", str(cid), e.message, decided=True)
    except review.ReviewError as e:  # e.g. a creator configured with a ppv price of 0
        return Outcome(path, "ignored", str(cid), e.message)
    return Outcome(path, action, str(cid))


def _report(outcome: Outcome) -> None:
    fields = {"path": str(outcome.path), "content_id": outcome.content_id}
    if outcome.action != "ignored":
        log.info(f"folder review: {outcome.action}", **fields)
    elif outcome.decided:
        log.debug("folder review: file left alone", reason=outcome.reason, **fields)
    else:
        log.warning("folder review: file left alone", reason=outcome.reason, **fields)


async def _watch_creator(
    creator_dir: Path,
    *,
    root: Path,
    uow: UnitOfWorkFactory,
    settings: Settings,
    stop_event: asyncio.Event,
    on_outcome: OnOutcome | None,
    on_ready: Callable[[], Any] | None,
) -> None:
    from vaultline.adapters.watcher import watch_complete_files

    folders = await asyncio.to_thread(_prepare, creator_dir)
    watch = watch_complete_files(folders, stop_event=stop_event, on_ready=on_ready)
    async with aclosing(watch) as paths:
        async for path in paths:
            try:
                outcome = await decide_file(path, root=root, uow=uow, settings=settings)
            except Exception as e:  # a database hiccup must not end the watcher
                log.exception("folder review failed for a file", path=str(path))
                outcome = Outcome(path, "ignored", reason=f"error: {e!r}")
            _report(outcome)
            if on_outcome is not None:
                on_outcome(outcome)


async def watch_review_folders(
    uow: UnitOfWorkFactory,
    settings: Settings,
    root: Path,
    stop_event: asyncio.Event,
    *,
    on_outcome: OnOutcome | None = None,
    on_ready: Callable[[str], Any] | None = None,
    rescan_interval: float = 5.0,
) -> None:
    """Run until `stop_event` is set: one watcher per creator folder under `root`, started as
    creator folders appear. `on_outcome(Outcome)` hears about every file; `on_ready(slug)` is
    called once a creator's watcher is watching (files moved after that are seen)."""
    root = Path(root).expanduser().resolve()
    watchers: dict[str, asyncio.Task[None]] = {}
    log.info("folder review started", root=str(root))
    try:
        while not stop_event.is_set():
            for creator_dir in await asyncio.to_thread(creator_folders, root):
                slug = creator_dir.name
                task = watchers.get(slug)
                if task is not None and task.done():
                    if not task.cancelled() and task.exception() is not None:
                        log.error("folder review watcher died; restarting", creator=slug, error=repr(task.exception()))
                    task = None
                if task is None:
                    ready = (lambda s=slug: on_ready(s)) if on_ready is not None else None
                    watchers[slug] = asyncio.create_task(
                        _watch_creator(creator_dir, root=root, uow=uow, settings=settings, stop_event=stop_event,
                                       on_outcome=on_outcome, on_ready=ready),
                        name=f"folder-review-{slug}",
                    )  # fmt: skip
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=rescan_interval)
    finally:
        for task in watchers.values():
            task.cancel()
        for task in watchers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        log.info("folder review stopped")
