"""POST /api/ingest: the HTTP hook for producers (the ComfyUI node, scripts).

Either multipart form fields `file`, `creator`, `mode`, or JSON
`{"path": ..., "creator": ..., "mode": ...}` for a file under an allowed root
(VAULTLINE_INGEST_ROOTS or a creator's comfy_output_dirs). Token-authenticated like every
admin route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vaultline.events import CROP_MODES, SLUG_RE
from vaultline.settings import Settings

MAX_UPLOAD_BYTES = 256 * 1024 * 1024


def _bad(msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status)


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def ingest_routes(ingestor: Any, settings: Settings) -> list[Route]:
    async def ingest(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return _bad("multipart field `file` (the image) is required")
            data = await upload.read()
            filename = upload.filename or "upload.png"
            creator, mode = form.get("creator"), form.get("mode")
        elif ctype.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                return _bad("body is not valid JSON")
            if not isinstance(body, dict) or not isinstance(body.get("path"), str):
                return _bad("JSON body needs a `path` string")
            path = Path(body["path"]).expanduser()
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):
                return _bad(f"no such file: {body['path']}", 404)
            if not _under(resolved, settings.allowed_ingest_roots()):
                return _bad("path is outside the allowed ingest roots", 403)
            if not resolved.is_file():
                return _bad("path is not a file")
            data, filename = resolved.read_bytes(), resolved.name
            creator, mode = body.get("creator"), body.get("mode")
        else:
            return _bad("send multipart/form-data (file, creator, mode) or JSON (path, creator, mode)", 415)

        if creator is not None and (not isinstance(creator, str) or not SLUG_RE.match(creator)):
            return _bad("creator must be a slug ([a-z0-9_-])")
        if mode in ("", None):
            mode = None
        elif mode not in CROP_MODES:
            return _bad(f"mode must be one of {', '.join(CROP_MODES)}")
        if not data:
            return _bad("the file is empty")
        result = await ingestor.ingest_bytes(data, filename=filename, source="http", creator=creator, mode=mode)
        return JSONResponse(
            {
                "content_id": str(result.content_id),
                "status": result.status,
                "storage_key": result.storage_key,
                "near_duplicate_of": str(result.near_duplicate_of) if result.near_duplicate_of else None,
            },
            status_code=201 if result.status == "ingested" else 200,
        )

    return [Route("/api/ingest", ingest, methods=["POST"])]
