"""Review decisions: approve, reject, ask for another crop, edit tags.

Plain async functions over a unit-of-work factory, shared by the admin API, the CLI and the
folder-move watcher. A decision is one transaction: lock the content row, check it is still
in review, build the event, project it onto the row (exactly what the tracker will compute
when the event comes back from the stream) and queue the event in the outbox. The relay
publishes it after commit, so a decision that fails half-way never reaches the stream and a
second decision on the same image is a Conflict, never a second event."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog

from pydantic import BaseModel, ValidationError

from vaultline.domain.content import REVIEWABLE, project
from vaultline.domain.errors import Conflict, Invalid, NotFound, UserError
from vaultline.events import (
    Envelope,
    ImageApproved,
    ImageRecropRequested,
    ImageRejected,
    CROP_MODES,
    MAX_TAG_LEN,
    MAX_TAGS,
    MediaUploadRetryRequested,
    new_event,
    utcnow,
)
from vaultline.handlers.ports import UnitOfWork, UnitOfWorkFactory



# The errors of a review decision are the use cases' shared ones (one HTTP mapping for all).
ReviewError = UserError
log = structlog.get_logger("vaultline.review")


# --------------------------------------------------------------------------- validation


def plain_errors(e: ValidationError) -> str:
    """pydantic's errors as one readable line: `price_cents: Input should be ...; vault: ...`."""
    parts = []
    for err in e.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise Invalid(plain_errors(e)) from None


def _as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{what} must be a JSON object")
    return value


def clean_tags(tags: Any) -> list[str]:
    """Trimmed, de-duplicated (first spelling wins) tags; refuses what the event would refuse."""
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise Invalid("tags must be a list of strings")
    out: list[str] = []
    for t in (t.strip() for t in tags):
        if not t or len(t) > MAX_TAG_LEN:
            raise Invalid(f"tags must be 1-{MAX_TAG_LEN} characters: {t!r}")
        if t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise Invalid(f"at most {MAX_TAGS} tags (got {len(out)})")
    return out


def validate_approval(decision: Any, reviewer: str | None = None) -> ImageApproved:
    """The approval a decision dict describes, or Invalid. No I/O: bulk callers check once."""
    decision = dict(_as_dict(decision, "the decision"))
    if "reviewer" in decision:
        raise Invalid("reviewer is set by the server, not by the request")
    price = decision.get("price_cents")
    # pydantic's lax mode would take True as 1 cent and "1299" as 1299.
    if price is not None and (isinstance(price, bool) or not isinstance(price, int)):
        raise Invalid("price_cents must be a whole number of cents")
    if "tags" in decision:
        decision["tags"] = clean_tags(decision["tags"])
    for field in ("category", "description"):
        if isinstance(decision.get(field), str):
            decision[field] = decision[field].strip() or None
    return _validated(ImageApproved, {**decision, "reviewer": reviewer})


def validate_rejection(reason: Any, reviewer: str | None = None) -> ImageRejected:
    if not isinstance(reason, str):
        raise Invalid("reason must be a string of 1-500 characters")
    return _validated(ImageRejected, {"reason": reason.strip(), "reviewer": reviewer})


# --------------------------------------------------------------------------- use cases


async def _locked_row(tx: UnitOfWork, content_id: uuid.UUID) -> dict[str, Any]:
    row = await tx.content.get(content_id, for_update=True)
    if row is None:
        raise NotFound(f"no content with id {content_id}")
    return row


def _require_reviewable(row: dict[str, Any]) -> None:
    status = row.get("status")
    if status not in REVIEWABLE:
        decided = status in ("approved", "rejected", "uploaded", "upload_failed")
        why = "already decided" if decided else "not in review"
        raise Conflict(f"content {row['id']} is {status}: {why}")


def _occurred_at(row: dict[str, Any]) -> datetime:
    # project() only moves `status` forward in time. If the event that put the row in review
    # carries a clock ahead of ours, a decision stamped "now" would not change the status and
    # the same image could be decided twice; stamp it just after that event instead.
    now, previous = utcnow(), row.get("status_at")
    if previous is not None and previous >= now:
        return previous + timedelta(milliseconds=1)
    return now


async def _decide(tx: UnitOfWork, row: dict[str, Any], type_: str, payload: BaseModel) -> dict[str, Any]:
    event: Envelope = new_event(
        type_, creator=row["creator"], key=row["id"], payload=payload, occurred_at=_occurred_at(row)
    )
    new = project(row, event)
    assert new is not None  # every review event concerns the content table
    await tx.content.upsert(new)
    await tx.add_outbox(event)
    return new


async def approve(uow: UnitOfWorkFactory, content_id: uuid.UUID, decision: dict[str, Any], reviewer: str) -> dict[str, Any]:
    """Approve an image in review into a vault. Returns the updated row.

    `decision`: vault, and optionally category, tags, description, price_cents (> 0 for ppv),
    post. Without `tags`, the tags already on the row (set while reviewing) are kept."""
    payload = validate_approval(decision, reviewer)
    async with uow() as tx:
        row = await _locked_row(tx, content_id)
        _require_reviewable(row)
        if "tags" not in decision and row.get("tags"):
            payload = payload.model_copy(update={"tags": list(row["tags"])})
        return await _decide(tx, row, "image.approved", payload)


async def reject(uow: UnitOfWorkFactory, content_id: uuid.UUID, reason: str, reviewer: str) -> dict[str, Any]:
    """Reject an image in review. Returns the updated row."""
    payload = validate_rejection(reason, reviewer)
    async with uow() as tx:
        row = await _locked_row(tx, content_id)
        _require_reviewable(row)
        return await _decide(tx, row, "image.rejected", payload)


async def request_recrop(uow: UnitOfWorkFactory, content_id: uuid.UUID, mode: str, reviewer: str) -> dict[str, Any]:
    """Send an image in review back to the crop handler with another mode."""
    if not isinstance(mode, str):
        raise Invalid(f"mode must be one of {', '.join(CROP_MODES)}")
    async with uow() as tx:
        row = await _locked_row(tx, content_id)
        _require_reviewable(row)
        if not row.get("raw_key"):
            raise Conflict(f"content {content_id} has no original on record to crop again")
        payload = _validated(
            ImageRecropRequested,
            {"mode": mode, "raw_key": row["raw_key"], "original_filename": row.get("original_filename"),
             "reviewer": reviewer},
        )  # fmt: skip
        return await _decide(tx, row, "image.recrop_requested", payload)


async def retry_upload(uow: UnitOfWorkFactory, content_id: uuid.UUID, reviewer: str) -> dict[str, Any]:
    """Send an image whose upload failed back to the upload handler; it resumes at the step
    that failed (the upload's state machine keeps its progress)."""
    async with uow() as tx:
        row = await _locked_row(tx, content_id)
        if row.get("status") != "upload_failed":
            raise Conflict(f"content {content_id} is {row.get('status')}: only a failed upload can be retried")
        payload = _validated(MediaUploadRetryRequested, {"reviewer": reviewer})
        return await _decide(tx, row, "media.upload_retry_requested", payload)


async def set_tags(uow: UnitOfWorkFactory, content_id: uuid.UUID, tags: list[str]) -> dict[str, Any]:
    """Replace the tags of an image in any status. No event: tags become part of the audit
    trail with the approval that carries them."""
    cleaned = clean_tags(tags)
    async with uow() as tx:
        row = await _locked_row(tx, content_id)
        row["tags"] = cleaned
        await tx.content.upsert(row)
        return row


async def decide_each(
    ids: Iterable[Any], decide: Callable[[uuid.UUID], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Run one decision per id, each its own transaction (one conflict does not undo the others).
    Returns one result per id, in order: `{id, ok, status, error?, row?}`. The API's bulk route
    and the CLI's approve/reject/retry-upload both go through this loop."""
    results: list[dict[str, Any]] = []
    for raw in ids:
        try:
            row = await decide(parse_id(raw))
            results.append({"id": str(raw), "ok": True, "status": 200, "row": row})
        except UserError as e:
            results.append({"id": str(raw), "ok": False, "status": e.status, "error": e.message})
        except Exception:
            log.exception("decision failed", content_id=str(raw))
            results.append({"id": str(raw), "ok": False, "status": 500, "error": "internal error (see the log)"})
    return results


def parse_id(value: Any) -> uuid.UUID:
    """A content id from a path, a form or the command line, or Invalid."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise Invalid(f"not a content id: {value!r}") from None


__all__ = [
    "Conflict",
    "Invalid",
    "NotFound",
    "ReviewError",
    "approve",
    "clean_tags",
    "decide_each",
    "parse_id",
    "plain_errors",
    "reject",
    "request_recrop",
    "set_tags",
    "validate_approval",
    "validate_rejection",
]
