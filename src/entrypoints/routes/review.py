"""The review API (contract: /api/content*, /api/review/bulk, /api/status, /api/meta). The review
page and scripts use it; the admin token is checked by the middleware before any of these run.

Decisions go through handlers/review.py (one transaction each, event via the outbox); reads come
from adapters/db/review.py; history is read from the EVENTS stream itself; images come from
storage, thumbnails from adapters/thumbnails.py. Request bodies are the event models' decision
parts (events.ApprovalDecision, events.Rejection), so the API cannot drift from the events."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from starlette.responses import Response

from vaultline.adapters.db import review as queries
from vaultline.adapters.thumbnails import ThumbnailCache, media_type
from vaultline.domain.content import STATUSES
from vaultline.domain.errors import Invalid, NotFound
from vaultline.entrypoints.admin import Services, services
from vaultline.events import CROP_MODES, SLUG_RE, VAULTS, ApprovalDecision, ComfyMeta, CropMode, Rejection, Tags, Vault
from vaultline.handlers import review

log = structlog.get_logger("vaultline.admin.review")

REVIEWER = "admin"  # one shared admin token: the API cannot tell reviewers apart
MAX_BULK = 500
HISTORY_TIMEOUT_S = 10.0
VARIANTS = ("cropped", "original", "thumb")
Badge = Literal["face", "fallback", "near_duplicate", "needs_manual_crop", "face_check"]

router = APIRouter(tags=["review"])


# --------------------------------------------------------------------------- shapes


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImagesOut(_Out):
    cropped: str
    original: str
    thumb: str


class ItemOut(_Out):
    id: uuid.UUID
    creator: str
    status: str
    original_filename: str | None
    created_at: datetime
    generated_at: datetime | None
    crop_mode_used: CropMode | Literal["fallback"] | None
    requested_crop_mode: str | None
    face_found: bool | None
    faces: int | None
    cut_y: int | None
    width: int | None
    height: int | None
    fallback_reason: str | None
    needs_manual_crop: bool
    near_duplicate_of: uuid.UUID | None
    crop_confidence: float | None
    comfy: ComfyMeta | None
    vault: Vault | None
    category: str | None
    tags: list[str]
    description: str | None
    price_cents: int | None
    reject_reason: str | None
    error: str | None
    badges: list[Badge]
    images: ImagesOut


class HistoryEntry(_Out):
    seq: int
    type: str | None
    occurred_at: datetime | None
    event_id: uuid.UUID | None
    payload: dict[str, Any] | None
    error: str | None = Field(default=None, description="only when the stored message is not a valid event")

    @model_serializer(mode="wrap")
    def _error_only_when_set(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("error") is None:
            data.pop("error", None)
        return data


class ItemDetail(ItemOut):
    history: list[HistoryEntry]
    history_error: str | None = Field(default=None, description="set when the stream could not be read")


class ContentPage(_Out):
    items: list[ItemOut]
    next_cursor: str | None


class ApproveBody(ApprovalDecision):
    """Approve an item in review: events.ApprovalDecision (the reviewer is set by the server)."""


class RejectBody(Rejection):
    """Reject an item in review: events.Rejection."""


class TagsBody(_Out):
    tags: Tags


class RecropBody(_Out):
    mode: CropMode


class BulkApprove(ApprovalDecision):
    action: Literal["approve"]
    ids: list[str] = Field(min_length=1, max_length=MAX_BULK, description="content ids")


class BulkReject(Rejection):
    action: Literal["reject"]
    ids: list[str] = Field(min_length=1, max_length=MAX_BULK, description="content ids")


BulkBody = Annotated[BulkApprove | BulkReject, Field(discriminator="action")]


class BulkResult(_Out):
    id: str
    ok: bool
    status: int | None = None
    error: str | None = None


class BulkOut(_Out):
    results: list[BulkResult]


class StatusCount(_Out):
    creator: str
    status: str
    count: int


class StatusOut(_Out):
    counts: list[StatusCount]
    stages: dict[str, int]


class MetaOut(_Out):
    """The vocabularies pages need, so no page keeps its own list."""

    crop_modes: list[str]
    vaults: list[str]
    statuses: list[str]
    flags: list[str]


class ErrorOut(_Out):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "bad input"},
    401: {"model": ErrorOut, "description": "no admin token"},
    403: {"model": ErrorOut, "description": "wrong admin token, or a cross-site request authenticated by cookie"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "unknown content id"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "not in review / already decided"}}


def item_out(row: dict[str, Any]) -> ItemOut:
    """A content row as the contract's item."""
    cid = row["id"]
    base = f"/api/content/{cid}/image?variant="
    confidence = row.get("crop_confidence")
    return ItemOut(
        id=cid,
        creator=row["creator"],
        status=row["status"],
        original_filename=row.get("original_filename"),
        created_at=row["created_at"],
        generated_at=row.get("generated_at"),
        crop_mode_used=row.get("crop_mode_used"),
        requested_crop_mode=row.get("requested_crop_mode"),
        face_found=row.get("face_found"),
        faces=row.get("faces"),
        cut_y=row.get("cut_y"),
        width=row.get("width"),
        height=row.get("height"),
        fallback_reason=row.get("fallback_reason"),
        needs_manual_crop=bool(row.get("needs_manual_crop")),
        near_duplicate_of=row.get("near_duplicate_of"),
        # `real` column: show 0.93, not 0.9300000071525879.
        crop_confidence=round(confidence, 4) if confidence is not None else None,
        comfy=ComfyMeta.model_validate(row["comfy"]) if row.get("comfy") else None,
        vault=row.get("vault"),
        category=row.get("category"),
        tags=list(row.get("tags") or []),
        description=row.get("description"),
        price_cents=row.get("price_cents"),
        reject_reason=row.get("reject_reason"),
        error=row.get("error"),
        badges=queries.badges(row),
        images=ImagesOut(cropped=base + "cropped", original=base + "original", thumb=base + "thumb"),
    )


def item_json(row: dict[str, Any]) -> dict[str, Any]:
    return item_out(row).model_dump(mode="json")


async def _row(svc: Services, content_id: str) -> dict[str, Any]:
    cid = review.parse_id(content_id)
    row = await queries.get_content(svc.pool, cid)
    if row is None:
        raise NotFound(f"no content with id {cid}")
    return row


# --------------------------------------------------------------------------- reads


@router.get("/api/content", response_model=ContentPage, responses=ERRORS, summary="List content, newest first")
async def list_content(
    svc: Annotated[Services, Depends(services)],
    status: str | None = None,
    creator: str | None = None,
    flag: Annotated[list[str], Query(description="repeatable or comma-separated")] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ContentPage:
    if creator and not SLUG_RE.match(creator):
        raise Invalid("creator must be a slug ([a-z0-9_-])")
    flags = [f for value in flag for f in value.split(",") if f]
    try:
        rows, next_cursor = await queries.list_content(
            svc.pool, status=status or None, creator=creator or None, flags=flags, limit=limit, cursor=cursor or None
        )
    except ValueError as e:  # unknown status or flag, bad cursor
        raise Invalid(str(e)) from None
    return ContentPage(items=[item_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/api/content/{id}", response_model=ItemDetail, responses={**ERRORS, **NOT_FOUND},
            summary="One item with its event history from the stream")  # fmt: skip
async def get_item(id: str, svc: Annotated[Services, Depends(services)]) -> ItemDetail:
    row = await _row(svc, id)
    detail = item_out(row).model_dump()
    try:
        history = await asyncio.wait_for(_history(svc.js, row), HISTORY_TIMEOUT_S)
        return ItemDetail(**detail, history=history)
    except Exception as e:  # the item is still worth showing without its audit trail
        log.warning("could not read history", content_id=str(row["id"]), error=repr(e))
        return ItemDetail(**detail, history=[], history_error="could not read the event stream")


@router.get(
    "/api/content/{id}/image",
    responses={**ERRORS, **NOT_FOUND, 200: {"content": {m: {} for m in ("image/png", "image/jpeg", "image/webp")}}},
    response_class=Response,
    summary="Image bytes; thumb is a JPEG at most 320 px wide",
)
async def image(
    id: str,
    svc: Annotated[Services, Depends(services)],
    variant: Literal["cropped", "original", "thumb"] = "cropped",
) -> Response:
    row = await _row(svc, id)
    if svc.storage is None:
        raise HTTPException(503, "no storage is configured")
    cropped = [row.get("review_key"), row.get("cropped_key")]  # review copy; the archive copy survives moves
    original = [row.get("raw_key")] + ([row.get("local_path")] if row.get("status") == "crop_failed" else [])
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}

    async def first_existing(keys: list[str | None]) -> bytes | None:
        for key in dict.fromkeys(k for k in keys if k):
            try:
                return await svc.storage.get(key)
            except (KeyError, ValueError):
                continue
        return None

    if variant == "thumb":
        thumbs = ThumbnailCache(Path(svc.settings.data_dir) / "cache" / "thumbs")
        try:
            thumb = await thumbs.get(row, lambda: first_existing(cropped + original))
        except Exception as e:
            log.warning("thumbnail failed", content_id=str(row["id"]), error=repr(e))
            raise HTTPException(500, "could not make a thumbnail of this image") from None
        if thumb is None:
            raise NotFound(f"no image of content {row['id']} is in storage")
        return Response(thumb, media_type="image/jpeg", headers=headers)
    data = await first_existing(cropped if variant == "cropped" else original)
    if data is None:
        raise NotFound(f"the {variant} image of content {row['id']} is not in storage")
    return Response(data, media_type=media_type(data), headers=headers)


@router.get("/api/status", response_model=StatusOut, responses=ERRORS,
            summary="Counts per creator and status, and totals per stage")  # fmt: skip
async def status(svc: Annotated[Services, Depends(services)]) -> StatusOut:
    counts = await queries.status_counts(svc.pool)
    return StatusOut(counts=[StatusCount(**c) for c in counts], stages=queries.stage_totals(counts))


@router.get("/api/meta", response_model=MetaOut, responses=ERRORS, summary="Crop modes, vaults, statuses, flags")
async def meta() -> MetaOut:
    return MetaOut(crop_modes=list(CROP_MODES), vaults=list(VAULTS), statuses=list(STATUSES), flags=list(queries.FLAGS))


# --------------------------------------------------------------------------- decisions

DECISION = {**ERRORS, **NOT_FOUND, **CONFLICT}


@router.post("/api/content/{id}/approve", response_model=ItemOut, responses=DECISION,
             summary="Approve an item in review")  # fmt: skip
async def approve(id: str, body: ApproveBody, svc: Annotated[Services, Depends(services)]) -> ItemOut:
    row = await review.approve(svc.uow, review.parse_id(id), body.model_dump(exclude_unset=True), REVIEWER)
    return item_out(row)


@router.post("/api/content/{id}/reject", response_model=ItemOut, responses=DECISION, summary="Reject an item in review")
async def reject(id: str, body: RejectBody, svc: Annotated[Services, Depends(services)]) -> ItemOut:
    return item_out(await review.reject(svc.uow, review.parse_id(id), body.reason, REVIEWER))


@router.post("/api/content/{id}/tags", response_model=ItemOut, responses={**ERRORS, **NOT_FOUND},
             summary="Replace the tags (any status, no event)")  # fmt: skip
async def tags(id: str, body: TagsBody, svc: Annotated[Services, Depends(services)]) -> ItemOut:
    return item_out(await review.set_tags(svc.uow, review.parse_id(id), body.tags))


@router.post("/api/content/{id}/recrop", response_model=ItemOut, responses=DECISION,
             summary="Crop again with another mode (status becomes recrop_requested)")  # fmt: skip
async def recrop(id: str, body: RecropBody, svc: Annotated[Services, Depends(services)]) -> ItemOut:
    return item_out(await review.request_recrop(svc.uow, review.parse_id(id), body.mode, REVIEWER))


@router.post("/api/content/{id}/retry-upload", response_model=ItemOut, responses=DECISION,
             summary="Retry a failed upload; it resumes at the step that failed")  # fmt: skip
async def retry_upload(id: str, svc: Annotated[Services, Depends(services)]) -> ItemOut:
    return item_out(await review.retry_upload(svc.uow, review.parse_id(id), REVIEWER))


@router.post("/api/review/bulk", response_model=BulkOut, responses=ERRORS, response_model_exclude_none=True,
             summary="Approve or reject many items; each id is its own transaction")  # fmt: skip
async def bulk(body: BulkBody, svc: Annotated[Services, Depends(services)]) -> BulkOut:
    # The body (the decision) was validated as a whole before any id is touched.
    if isinstance(body, BulkApprove):
        decision = body.model_dump(exclude_unset=True, exclude={"action", "ids"})
        results = await review.decide_each(body.ids, lambda cid: review.approve(svc.uow, cid, decision, REVIEWER))
    else:
        results = await review.decide_each(body.ids, lambda cid: review.reject(svc.uow, cid, body.reason, REVIEWER))
    return BulkOut(results=[BulkResult(**{k: v for k, v in r.items() if k != "row"}) for r in results])


async def _history(js: Any, row: dict[str, Any]) -> list[HistoryEntry]:
    from vaultline.adapters.bus.stream import history_subject, read_events

    out = []
    async for se in read_events(js, subject=history_subject(str(row["id"]), row["creator"])):
        e = se.event
        if e is None:
            # Not a valid event (should never be stored): show where it is, not what it says.
            type_ = ".".join(se.subject.split(".")[:2])
            out.append(HistoryEntry(seq=se.seq, type=type_, occurred_at=None, event_id=None, payload=None, error=se.error))
            continue
        out.append(
            HistoryEntry(seq=se.seq, type=e.type, occurred_at=e.occurred_at, event_id=e.event_id,
                         payload=json.loads(e.payload.model_dump_json()))
        )  # fmt: skip
    return out
