"""The review API of the admin app (contract: /api/content*, /api/review/bulk, /api/status,
/openapi.json). The page (review_page.py) and scripts use it; the admin token is checked by
TokenAuth before any of these run.

Decisions go through handlers/review.py (one transaction each, event via the outbox); reads
come from adapters/db/review.py; history is read from the EVENTS stream itself; images come
from storage, thumbnails are made once with Pillow and cached under DATA_DIR/cache/thumbs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vaultline.adapters.db import review as queries
from vaultline.domain.content import STATUSES
from vaultline.events import SLUG_RE
from vaultline.handlers import review
from vaultline.handlers.review import Invalid, NotFound, ReviewError

log = structlog.get_logger("vaultline.admin.review")

REVIEWER = "admin"  # one shared admin token: the API cannot tell reviewers apart
THUMB_WIDTH = 320
MAX_BULK = 500
HISTORY_TIMEOUT_S = 10.0
VARIANTS = ("cropped", "original", "thumb")


# --------------------------------------------------------------------------- JSON shapes
# These models are the contract's shapes: items are serialised through ItemOut, and the
# OpenAPI document is generated from all of them, so the document cannot drift from the code.


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComfyOut(BaseModel):
    seed: int | None = None
    checkpoint: str | None = None
    positive_prompt: str | None = None
    prompt_id: str | None = None


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
    crop_mode_used: Literal["no_face", "chin", "lips_only", "fallback"] | None
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
    comfy: ComfyOut | None
    vault: Literal["feed", "ppv", "archive"] | None
    category: str | None
    tags: list[str]
    description: str | None
    price_cents: int | None
    reject_reason: str | None
    error: str | None
    badges: list[Literal["face", "fallback", "near_duplicate", "needs_manual_crop", "face_check"]]
    images: ImagesOut


class HistoryEntry(_Out):
    seq: int
    type: str | None
    occurred_at: datetime | None
    event_id: uuid.UUID | None
    payload: dict[str, Any] | None
    error: str | None = Field(default=None, description="set when the stored message is not a valid event")


class ItemDetail(ItemOut):
    history: list[HistoryEntry]
    history_error: str | None = Field(default=None, description="set when the stream could not be read")


class ContentPage(_Out):
    items: list[ItemOut]
    next_cursor: str | None


class FeedPostIn(_Out):
    audience: Literal["subscribers", "followers-and-subscribers"] = "subscribers"
    text: str | None = None
    publish_at: datetime | None = None


class ApproveBody(_Out):
    vault: Literal["feed", "ppv", "archive"]
    category: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=32, description="each 1-64 characters")
    description: str | None = Field(default=None, max_length=2000)
    price_cents: int | None = Field(default=None, ge=0, description="required and > 0 for ppv")
    post: FeedPostIn | None = None


class RejectBody(_Out):
    reason: str = Field(min_length=1, max_length=500)


class TagsBody(_Out):
    tags: list[str] = Field(max_length=32, description="each 1-64 characters")


class RecropBody(_Out):
    mode: Literal["no_face", "chin", "lips_only"]


class BulkBody(_Out):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_BULK)
    action: Literal["approve", "reject"]
    vault: Literal["feed", "ppv", "archive"] | None = Field(default=None, description="approve")
    category: str | None = Field(default=None, max_length=64, description="approve")
    tags: list[str] | None = Field(default=None, max_length=32, description="approve")
    description: str | None = Field(default=None, max_length=2000, description="approve")
    price_cents: int | None = Field(default=None, ge=0, description="approve; required > 0 for ppv")
    post: FeedPostIn | None = Field(default=None, description="approve")
    reason: str | None = Field(default=None, min_length=1, max_length=500, description="reject")


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


class ErrorOut(_Out):
    error: str


def item_json(row: dict[str, Any]) -> dict[str, Any]:
    """A content row as the contract's item JSON."""
    cid = row["id"]
    base = f"/api/content/{cid}/image?variant="
    confidence = row.get("crop_confidence")
    item = ItemOut(
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
        comfy=ComfyOut.model_validate(row["comfy"]) if row.get("comfy") else None,
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
    return item.model_dump(mode="json")


# --------------------------------------------------------------------------- helpers


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


Endpoint = Callable[[Request], Awaitable[Response]]


def _errors_as_json(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ReviewError as e:
            return _error(e.message, e.status)
        except ValueError as e:  # bad query parameters (cursor, status, flag, limit)
            return _error(str(e), 400)
        except Exception as e:  # the page shows {"error"} bodies; never a bare HTML 500
            log.exception("review API request failed", path=request.url.path)
            return _error(f"internal error: {type(e).__name__}: {e}", 500)

    wrapped.__name__ = endpoint.__name__
    return wrapped


async def _body(request: Request, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise Invalid("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise Invalid("the request body must be a JSON object")
    if allowed is not None:
        extra = sorted(set(body) - set(allowed))
        if extra:
            raise Invalid(f"unexpected field(s): {', '.join(extra)} (allowed: {', '.join(allowed)})")
    return body


def _media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def make_thumbnail(data: bytes, width: int = THUMB_WIDTH) -> bytes:
    """JPEG at most `width` px wide, aspect kept; transparency flattened onto white."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (width, width * 8))  # JPEG: decode at a reduced scale, much faster
        img = ImageOps.exif_transpose(im)
        if img.width > width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS)
        if img.mode in ("RGBA", "LA", "P", "PA"):
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))
        else:
            img = img.convert("RGB")
        out = io.BytesIO()
        img.save(out, "JPEG", quality=82, optimize=True)
        return out.getvalue()


def _thumb_version(row: dict[str, Any]) -> str:
    # Everything that decides which pixels the thumbnail shows. A recrop overwrites the same
    # storage key, but changes these fields (crops are deterministic for the same fields), so
    # the cache needs no reading of the source to know it is stale.
    fields = ("review_key", "cropped_key", "raw_key", "crop_mode_used", "cut_y", "crop_box", "width", "height")
    blob = json.dumps([row.get(f) for f in fields], default=str, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_cache(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # concurrent requests for one thumbnail: last rename wins, whole
    except BaseException:
        _unlink_quietly(tmp)
        raise
    # Older versions of this item's thumbnail (before a recrop) are garbage now.
    prefix = path.name.split("-v", 1)[0] + "-v"
    for old in path.parent.glob(prefix + "*.jpg"):
        if old != path:
            _unlink_quietly(old)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- routes


def review_routes(ctx: Any, runtime: Any) -> list[Route]:
    """Every /api route of the review contract plus /openapi.json. `runtime` is a started
    bootstrap.Runtime (its ports give the pool, unit of work, storage, settings and JetStream)."""
    ports = runtime.ports
    if ports is None:
        raise RuntimeError("review_routes needs a started Runtime")
    pool, uow, storage, settings = ports.pool, ports.uow, ports.storage, ports.settings
    thumbs_dir = Path(settings.data_dir) / "cache" / "thumbs"
    openapi = openapi_document()

    async def _row(request: Request) -> dict[str, Any]:
        cid = review.parse_id(request.path_params["id"])
        row = await queries.get_content(pool, cid)
        if row is None:
            raise NotFound(f"no content with id {cid}")
        return row

    # ------------------------------------------------------------------ reads

    async def list_content(request: Request) -> Response:
        q = request.query_params
        creator = q.get("creator") or None
        if creator is not None and not SLUG_RE.match(creator):
            raise Invalid("creator must be a slug ([a-z0-9_-])")
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise Invalid("limit must be a whole number") from None
        flags = [f for value in q.getlist("flag") for f in value.split(",") if f]
        rows, next_cursor = await queries.list_content(
            pool, status=q.get("status") or None, creator=creator, flags=flags, limit=limit,
            cursor=q.get("cursor") or None,
        )  # fmt: skip
        return JSONResponse({"items": [item_json(r) for r in rows], "next_cursor": next_cursor})

    async def get_item(request: Request) -> Response:
        row = await _row(request)
        item = item_json(row)
        try:
            item["history"] = await asyncio.wait_for(_history(ports.js, row), HISTORY_TIMEOUT_S)
        except Exception as e:  # the item is still worth showing without its audit trail
            log.warning("could not read history", content_id=str(row["id"]), error=repr(e))
            item["history"], item["history_error"] = [], f"could not read the event stream: {e!r}"
        return JSONResponse(item)

    async def image(request: Request) -> Response:
        variant = request.query_params.get("variant", "cropped")
        if variant not in VARIANTS:
            raise Invalid(f"variant must be one of {', '.join(VARIANTS)}")
        row = await _row(request)
        if storage is None:
            return _error("no storage is configured", 503)
        cropped = [row.get("review_key"), row.get("cropped_key")]  # review copy; the archive copy survives moves
        original = [row.get("raw_key")] + ([row.get("local_path")] if row.get("status") == "crop_failed" else [])
        headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
        if variant == "thumb":
            path = thumbs_dir / f"{row['id']}-v{_thumb_version(row)}.jpg"
            try:
                return Response(await asyncio.to_thread(path.read_bytes), media_type="image/jpeg", headers=headers)
            except FileNotFoundError:
                pass
            data = await _first_existing(cropped + original)
            if data is None:
                raise NotFound(f"no image of content {row['id']} is in storage")
            try:
                thumb = await asyncio.to_thread(make_thumbnail, data)
            except Exception as e:
                log.warning("thumbnail failed", content_id=str(row["id"]), error=repr(e))
                return _error(f"could not make a thumbnail: {e}", 500)
            await asyncio.to_thread(_write_cache, path, thumb)
            return Response(thumb, media_type="image/jpeg", headers=headers)
        data = await _first_existing(cropped if variant == "cropped" else original)
        if data is None:
            raise NotFound(f"the {variant} image of content {row['id']} is not in storage")
        return Response(data, media_type=_media_type(data), headers=headers)

    async def _first_existing(keys: list[str | None]) -> bytes | None:
        for key in dict.fromkeys(k for k in keys if k):
            try:
                return await storage.get(key)
            except (KeyError, ValueError):
                continue
        return None

    async def status(_: Request) -> Response:
        counts = await queries.status_counts(pool)
        return JSONResponse({"counts": counts, "stages": queries.stage_totals(counts)})

    async def openapi_json(_: Request) -> Response:
        return JSONResponse(openapi)

    # ------------------------------------------------------------------ decisions

    async def approve(request: Request) -> Response:
        cid = review.parse_id(request.path_params["id"])
        row = await review.approve(uow, cid, await _body(request), REVIEWER)
        return JSONResponse(item_json(row))

    async def reject(request: Request) -> Response:
        cid = review.parse_id(request.path_params["id"])
        body = await _body(request, ("reason",))
        row = await review.reject(uow, cid, body.get("reason"), REVIEWER)
        return JSONResponse(item_json(row))

    async def tags(request: Request) -> Response:
        cid = review.parse_id(request.path_params["id"])
        body = await _body(request, ("tags",))
        if "tags" not in body:
            raise Invalid("tags is required")
        row = await review.set_tags(uow, cid, body["tags"])
        return JSONResponse(item_json(row))

    async def recrop(request: Request) -> Response:
        cid = review.parse_id(request.path_params["id"])
        body = await _body(request, ("mode",))
        row = await review.request_recrop(uow, cid, body.get("mode"), REVIEWER)
        return JSONResponse(item_json(row))

    async def retry_upload(request: Request) -> Response:
        cid = review.parse_id(request.path_params["id"])
        row = await review.retry_upload(uow, cid, REVIEWER)
        return JSONResponse(item_json(row))

    async def bulk(request: Request) -> Response:
        body = await _body(request)
        ids, action = body.pop("ids", None), body.pop("action", None)
        if not isinstance(ids, list) or not ids:
            raise Invalid("ids must be a non-empty list of content ids")
        if len(ids) > MAX_BULK:
            raise Invalid(f"at most {MAX_BULK} ids per request")
        decide: Callable[[uuid.UUID], Awaitable[Any]]
        # The decision is checked once, before any id: a bad body writes nothing at all.
        if action == "approve":
            review.validate_approval(body, REVIEWER)
            decide = lambda cid: review.approve(uow, cid, body, REVIEWER)  # noqa: E731
        elif action == "reject":
            extra = sorted(set(body) - {"reason"})
            if extra:
                raise Invalid(f"unexpected field(s) for reject: {', '.join(extra)}")
            review.validate_rejection(body.get("reason"), REVIEWER)
            decide = lambda cid: review.reject(uow, cid, body["reason"], REVIEWER)  # noqa: E731
        else:
            raise Invalid("action must be approve or reject")
        results = []
        for raw in ids:
            # Each id is its own transaction: one conflict does not undo the others.
            try:
                await decide(review.parse_id(raw))
                results.append({"id": str(raw), "ok": True, "status": 200})
            except ReviewError as e:
                results.append({"id": str(raw), "ok": False, "status": e.status, "error": e.message})
            except Exception as e:
                log.exception("bulk decision failed", content_id=str(raw))
                results.append({"id": str(raw), "ok": False, "status": 500, "error": f"internal error: {e!r}"})
        return JSONResponse({"results": results})

    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/api/content", list_content, ["GET"]),
        ("/api/content/{id}", get_item, ["GET"]),
        ("/api/content/{id}/image", image, ["GET"]),
        ("/api/content/{id}/approve", approve, ["POST"]),
        ("/api/content/{id}/reject", reject, ["POST"]),
        ("/api/content/{id}/tags", tags, ["POST"]),
        ("/api/content/{id}/recrop", recrop, ["POST"]),
        ("/api/content/{id}/retry-upload", retry_upload, ["POST"]),
        ("/api/review/bulk", bulk, ["POST"]),
        ("/api/status", status, ["GET"]),
        ("/openapi.json", openapi_json, ["GET"]),
    ]
    return [Route(path, _errors_as_json(fn), methods=methods) for path, fn, methods in table]


async def _history(js: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
    from vaultline.adapters.bus.stream import history_subject, read_events

    out = []
    async for se in read_events(js, subject=history_subject(str(row["id"]), row["creator"])):
        e = se.event
        if e is None:
            # Not a valid event (should never be stored): show where it is, not what it says.
            type_ = ".".join(se.subject.split(".")[:2])
            out.append({"seq": se.seq, "type": type_, "occurred_at": None, "event_id": None, "payload": None,
                        "error": se.error})  # fmt: skip
            continue
        out.append({
            "seq": se.seq,
            "type": e.type,
            "occurred_at": e.occurred_at.isoformat(),
            "event_id": str(e.event_id),
            "payload": json.loads(e.payload.model_dump_json()),
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------- OpenAPI


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 of the review API, schemas generated from the models above."""
    models: list[type[BaseModel]] = [
        ItemOut, ItemDetail, ContentPage, ApproveBody, RejectBody, TagsBody, RecropBody, BulkBody, BulkOut,
        StatusOut, ErrorOut,
    ]  # fmt: skip
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = top.get("$defs", {})

    def ref(name: str) -> str:
        return f"#/components/schemas/{name}"

    err = {
        "400": _json(ref("ErrorOut"), "bad input"),
        "401": _json(ref("ErrorOut"), "no admin token"),
        "403": _json(ref("ErrorOut"), "wrong admin token, or a cross-site request authenticated by cookie"),
    }
    not_found = {"404": _json(ref("ErrorOut"), "unknown content id")}
    conflict = {"409": _json(ref("ErrorOut"), "not in review / already decided")}
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

    def post(summary: str, body: str, ok: dict[str, Any], *extra: dict[str, Any]) -> dict[str, Any]:
        responses = {"200": ok, **err}
        for e in extra:
            responses.update(e)
        return {
            "post": {
                "summary": summary,
                "parameters": [id_param] if body != "BulkBody" else [],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": ref(body)}}}},
                "responses": responses,
            }
        }

    item_ok = _json(ref("ItemOut"), "the updated item")
    paths: dict[str, Any] = {
        "/api/content": {
            "get": {
                "summary": "List content, newest first (created_at desc, id desc), keyset-paged",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
                    {"name": "creator", "in": "query", "schema": {"type": "string"}},
                    {"name": "flag", "in": "query", "description": "repeatable; all must hold",
                     "schema": {"type": "string", "enum": list(queries.FLAGS)}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": queries.MAX_LIMIT, "default": 50}},
                    {"name": "cursor", "in": "query", "description": "next_cursor of the previous page",
                     "schema": {"type": "string"}},
                ],  # fmt: skip
                "responses": {"200": _json(ref("ContentPage"), "one page of items"), **err},
            }
        },
        "/api/content/{id}": {
            "get": {
                "summary": "One item with its event history from the stream",
                "parameters": [id_param],
                "responses": {"200": _json(ref("ItemDetail"), "the item"), **err, **not_found},
            }
        },
        "/api/content/{id}/image": {
            "get": {
                "summary": "Image bytes; thumb is a JPEG at most 320 px wide",
                "parameters": [
                    id_param,
                    {"name": "variant", "in": "query",
                     "schema": {"type": "string", "enum": list(VARIANTS), "default": "cropped"}},
                ],  # fmt: skip
                "responses": {
                    "200": {"description": "the image",
                            "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                        for m in ("image/png", "image/jpeg", "image/webp")}},
                    **err, **not_found,
                },  # fmt: skip
            }
        },
        "/api/content/{id}/approve": post("Approve an item in review", "ApproveBody", item_ok, not_found, conflict),
        "/api/content/{id}/reject": post("Reject an item in review", "RejectBody", item_ok, not_found, conflict),
        "/api/content/{id}/tags": post("Replace the tags (any status, no event)", "TagsBody", item_ok, not_found),
        "/api/content/{id}/recrop": post(
            "Crop again with another mode (status becomes recrop_requested)", "RecropBody", item_ok, not_found, conflict
        ),
        "/api/content/{id}/retry-upload": {
            "post": {
                "summary": "Retry a failed upload; it resumes at the step that failed",
                "parameters": [id_param],
                "responses": {"200": item_ok, **err, **not_found, **conflict},
            }
        },
        "/api/review/bulk": post(
            "Approve or reject many items; each id is its own transaction",
            "BulkBody",
            _json(ref("BulkOut"), "one result per id"),
        ),
        "/api/status": {
            "get": {
                "summary": "Counts per creator and status, and totals per stage",
                "responses": {"200": _json(ref("StatusOut"), "counts"), **err},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document"}}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vaultline review API",
            "version": "1",
            "description": "Errors are {\"error\": message}. Every route needs the admin token.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "vaultline_admin"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
