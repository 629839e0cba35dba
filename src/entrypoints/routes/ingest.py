"""POST /api/ingest: the HTTP hook for producers (the ComfyUI node, scripts).

Either multipart form fields `file`, `creator`, `mode`, or JSON `{"path", "creator", "mode"}` for
a file under an allowed root (VAULTLINE_INGEST_ROOTS or a creator's comfy_output_dirs).
Token-authenticated like every admin route (the ingest-only token works here too).

Size: at most VAULTLINE_INGEST_MAX_BYTES per image. A larger upload is refused with 413 from its
Content-Length, or while it streams in (the count stops at the limit: never more than that is
held in memory), and nothing is stored."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from vaultline.domain.errors import Invalid, NotFound
from vaultline.entrypoints.admin import Services, services, validation_message
from vaultline.events import CROP_MODES, SLUG_RE, CropMode

# Room for the form fields and multipart boundaries around the image.
MULTIPART_OVERHEAD = 64 * 1024

router = APIRouter(tags=["ingest"])


class IngestPath(BaseModel):
    """JSON form: a file the server can read under an allowed root."""

    path: str
    creator: str | None = Field(default=None, pattern=SLUG_RE.pattern)
    mode: CropMode | Literal[""] | None = None


class IngestOut(BaseModel):
    content_id: uuid.UUID
    status: str = Field(description="ingested | duplicate")
    storage_key: str | None
    near_duplicate_of: uuid.UUID | None


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the image is larger than the {limit}-byte limit (VAULTLINE_INGEST_MAX_BYTES)")


async def bounded_body(request: Request, body_limit: int, image_limit: int) -> bytes:
    """The request body, refusing (413) one above `body_limit` bytes: first by its
    Content-Length, then by counting what actually arrives."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise _too_large(image_limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > body_limit:
            raise _too_large(image_limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def bounded_form(request: Request, limit: int) -> FormData:
    """The multipart form of `request`, its body at most `limit` bytes plus the form's overhead."""
    body_limit = limit + MULTIPART_OVERHEAD
    body = await bounded_body(request, body_limit, limit)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=body_limit)


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "creator": {"type": "string"},
                        "mode": {"type": "string", "enum": list(CROP_MODES)},
                    },
                }
            },
            "application/json": {"schema": IngestPath.model_json_schema()},
        },
    }
}


@router.post(
    "/api/ingest",
    response_model=IngestOut,
    status_code=201,
    responses={200: {"model": IngestOut, "description": "already ingested (duplicate)"}},
    openapi_extra=_BODY_DOC,
    summary="Ingest one image (multipart upload, or a path under an allowed root)",
)
async def ingest(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    from vaultline.bootstrap import Ingestor

    limit = svc.settings.ingest_max_bytes
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await bounded_form(request, limit)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Invalid("multipart field `file` (the image) is required")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        filename = upload.filename or "upload.png"
        creator, mode = form.get("creator"), form.get("mode")
    elif ctype.startswith("application/json"):
        try:
            body = IngestPath.model_validate_json(await bounded_body(request, MULTIPART_OVERHEAD, limit))
        except ValidationError as e:
            raise Invalid(validation_message(e.errors())) from None
        path = Path(body.path).expanduser()
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"no such file: {body.path}") from None
        if not _under(resolved, svc.settings.allowed_ingest_roots()):
            raise HTTPException(403, "path is outside the allowed ingest roots")
        if not resolved.is_file():
            raise Invalid("path is not a file")
        if resolved.stat().st_size > limit:
            raise _too_large(limit)
        data, filename = await asyncio.to_thread(resolved.read_bytes), resolved.name
        creator, mode = body.creator, body.mode
    else:
        raise HTTPException(415, "send multipart/form-data (file, creator, mode) or JSON (path, creator, mode)")

    if creator is not None and (not isinstance(creator, str) or not SLUG_RE.match(creator)):
        raise Invalid("creator must be a slug ([a-z0-9_-])")
    if mode in ("", None):
        mode = None
    elif mode not in CROP_MODES:
        raise Invalid(f"mode must be one of {', '.join(CROP_MODES)}")
    if not data:
        raise Invalid("the file is empty")
    result = await Ingestor(svc.runtime.ports).ingest_bytes(
        data, filename=filename, source="http", creator=creator, mode=mode
    )
    out = IngestOut(
        content_id=result.content_id,
        status=result.status,
        storage_key=result.storage_key,
        near_duplicate_of=result.near_duplicate_of,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if result.status == "ingested" else 200)
