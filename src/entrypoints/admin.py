"""The admin HTTP app (FastAPI). Binds 127.0.0.1 by default; every route except /health, /login
and the static files needs the admin token (bearer header or the session cookie set by /login).

One router per area lives in entrypoints/routes/ (review, ingest, pages, and the areas that come
later); each gets its ports through `Depends(services)`. Errors a caller can cause are the use
cases' own (`domain.errors.UserError`): one mapping below turns them, request-validation errors
and anything unexpected into `{"error": message}` with the right status for every router."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from vaultline.domain.errors import UserError

log = structlog.get_logger("vaultline.admin")

COOKIE = "vaultline_admin"
PUBLIC_PATHS = ("/health", "/login")
STATIC_DIR = Path(__file__).parent / "static"


def load_or_create_token(data_dir: Path, configured: str | None = None) -> str:
    """VAULTLINE_ADMIN_TOKEN wins; otherwise DIR/admin-token, created 0600 on first run."""
    if configured:
        return configured
    path = data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


@dataclass
class Services:
    """The ports the routers use, taken from a started bootstrap.Runtime (one place builds them)."""

    settings: Any
    pool: asyncpg.Pool
    uow: Any
    storage: Any
    publisher: Any
    js: Any
    platforms: Any
    runtime: Any = None

    @classmethod
    def from_runtime(cls, runtime: Any) -> "Services":
        p = runtime.ports
        if p is None:
            raise RuntimeError("the admin app needs a started Runtime")
        return cls(p.settings, p.pool, p.uow, p.storage, p.publisher, p.js, p.platforms, runtime)


@dataclass
class AdminContext:
    """What the app needs besides the routers; filled by the composition root."""

    token: str
    services: Services | None = None
    ready_checks: list[Callable[[], Awaitable[bool]]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def services(request: Request) -> Services:
    """FastAPI dependency: the ports of the running stack."""
    svc = request.app.state.ctx.services
    if svc is None:
        raise HTTPException(503, "this admin app was started without the pipeline's services")
    return svc


def context(request: Request) -> AdminContext:
    return request.app.state.ctx


class TokenAuth:
    """Pure ASGI middleware: constant-time token check on every non-public path."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        request = StarletteRequest(scope)
        given = _presented_token(request)
        if given is not None and _cross_site(request):
            response: Response = JSONResponse({"error": "cross-site request refused"}, status_code=403)
        elif given is None:
            if _wants_page(request):
                response = RedirectResponse("/login", status_code=303)
            else:
                response = JSONResponse({"error": "admin token required"}, status_code=401)
        elif not hmac.compare_digest(given.encode(), self.token):
            if _wants_page(request):  # a stale cookie (the token changed): sign in again
                response = RedirectResponse("/login", status_code=303)
                response.delete_cookie(COOKIE, path="/")
            else:
                response = JSONResponse({"error": "wrong admin token"}, status_code=403)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _wants_page(request: StarletteRequest) -> bool:
    """A browser navigating to a page (not a script or API call): send it to the login form."""
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith("/api/")
    )


def _cross_site(request: StarletteRequest) -> bool:
    """A state-changing request that authenticates by cookie must come from our own origin:
    browsers send the cookie with cross-site form posts, but not a bearer header."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return False
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].split("/", 1)[0] != host


def _presented_token(request: StarletteRequest) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE)


# --------------------------------------------------------------------------- errors


def validation_message(errors: Sequence[Any]) -> str:
    """pydantic/FastAPI errors as one line a person reads: `unexpected field(s): mood`,
    `tags is required`, `price_cents: Input should be ...`. `body`/`query` and union tags are
    left out of the location."""
    extra: list[str] = []
    parts: list[str] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc)
        kind, msg = err.get("type", ""), str(err.get("msg", "")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            extra.append(loc[-1] if loc else where)
        elif kind == "missing":
            parts.append(f"{where} is required")
        elif kind == "json_invalid" or (not loc and kind in ("model_attributes_type", "dict_type")):
            parts.append("the request body must be a JSON object")
        else:
            parts.append(f"{where}: {msg}" if where else msg)
    if extra:
        parts.insert(0, f"unexpected field(s): {', '.join(extra)}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _install_error_mapping(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(_: Request, e: UserError) -> JSONResponse:
        return _error(e.message, e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, e: RequestValidationError) -> JSONResponse:
        return _error(validation_message(e.errors()), 400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> Response:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        # Pages show {"error"} bodies; never a bare HTML 500, never the exception's own text.
        log.exception("admin request failed", path=request.url.path)
        return _error("internal error (details are in the server log)", 500)


# --------------------------------------------------------------------------- the app


def create_app(ctx: AdminContext, routers: Sequence[APIRouter] | None = None) -> FastAPI:
    """The admin app: /health, /ready, every router of entrypoints/routes (or `routers`),
    /static, and the generated OpenAPI document at /openapi.json (behind the token)."""
    from vaultline.entrypoints.routes import ROUTERS

    app = FastAPI(
        title="vaultline admin API",
        version="1",
        description='Errors are {"error": message}. Every route but /health, /login and the Fanvue '
        "webhooks needs the admin token (bearer header or the session cookie from /login).",
        docs_url=None,  # the interactive docs load scripts from a CDN: not under our CSP
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        checks = {}
        for check in ctx.ready_checks:
            try:
                checks[check.__name__] = bool(await check())
            except Exception:
                checks[check.__name__] = False
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    for router in ROUTERS if routers is None else routers:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_error_mapping(app)
    app.add_middleware(TokenAuth, token=ctx.token)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, plus what FastAPI leaves out: the document's own path and the
    two ways to present the admin token."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        doc["paths"]["/openapi.json"] = {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document"}}}
        }
        doc.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE},
        }
        doc["security"] = [{"bearer": []}, {"cookie": []}]
        app.openapi_schema = doc
    return app.openapi_schema


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The stack owns SIGINT/SIGTERM and stops everything in order; uvicorn must not
        # install its own handlers (it would re-raise the signal after its own shutdown).
        yield


class AdminServer:
    """uvicorn inside our event loop, on a free port unless one is configured."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self.server = _Server(config)
        self.host = host

    async def serve(self) -> None:
        await self.server.serve()

    @property
    def started(self) -> bool:
        return self.server.started

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
