"""Admin HTTP app (Starlette). Binds 127.0.0.1 by default; every route except /health needs
the admin token (bearer header or the session cookie set by /login)."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "vaultline_admin"
PUBLIC_PATHS = ("/health", "/login")


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
class AdminContext:
    """What routes need; filled by the composition root."""

    token: str
    pool: asyncpg.Pool | None = None
    ready_checks: list[Callable[[], Awaitable[bool]]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class TokenAuth:
    """Pure ASGI middleware: constant-time token check on every non-public path."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
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


def _wants_page(request: Request) -> bool:
    """A browser navigating to a page (not a script or API call): send it to the login form."""
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith("/api/")
    )


def _cross_site(request: Request) -> bool:
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


def _presented_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE)


def create_app(ctx: AdminContext, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        checks = {}
        for check in ctx.ready_checks:
            try:
                checks[check.__name__] = bool(await check())
            except Exception:
                checks[check.__name__] = False
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    routes: list[BaseRoute] = [Route("/health", health), Route("/ready", ready), *(extra_routes or [])]
    app = Starlette(routes=routes, middleware=[Middleware(TokenAuth, token=ctx.token)])
    app.state.ctx = ctx
    return app


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
