"""The admin HTTP app (FastAPI). Binds 127.0.0.1 by default; every route except /health, /login
and the static files needs the admin token (bearer header or the session cookie set by /login).

Security (issue 13): tokens are at least 32 characters (a weak or empty one stops the start);
an empty presented token is never accepted; the ingest token (the ComfyUI node's) opens
`POST /api/ingest` and nothing else; the session cookie holds a signed, expiring, revocable
session id, never the token; failed sign-ins and wrong tokens are throttled per client; the
Host header must name this server (DNS rebinding); a non-loopback bind needs TLS or an explicit
--insecure-bind.

One router per area lives in entrypoints/routes/ (review, ingest, pages, and the areas that come
later); each gets its ports through `Depends(services)`. Errors a caller can cause are the use
cases' own (`domain.errors.UserError`): one mapping below turns them, request-validation errors
and anything unexpected into `{"error": message}` with the right status for every router."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from collections import deque
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

from vaultline.adapters.private_files import load_or_create_secret
from vaultline.domain.errors import UserError
from vaultline.settings import MIN_TOKEN_LENGTH, Settings, token_problem

log = structlog.get_logger("vaultline.admin")

COOKIE = "vaultline_admin"
SESSION_MAX_AGE = 14 * 24 * 3600
PUBLIC_PATHS = ("/health", "/login")
# Paths under these prefixes authenticate themselves: static files need nothing, the Fanvue
# webhooks carry an HMAC signature (entrypoints/routes/webhooks.py).
PUBLIC_PREFIXES = ("/static/", "/webhooks/fanvue/")
STATIC_DIR = Path(__file__).parent / "static"
INGEST_ROUTE = ("POST", "/api/ingest")  # all the ingest token opens
ADMIN_TOKEN_FILE, INGEST_TOKEN_FILE = "admin-token", "ingest-token"


class RevalidatedStaticFiles(StaticFiles):
    """/static with `Cache-Control: no-cache`: the browser keeps its copy but asks again
    (ETag / If-Modified-Since, answered 304) each time. The page links its entry module with a
    content hash (pages.asset), but the ES modules that one imports (`./review/cards.js`) are
    fetched by plain URL and a build step would be needed to version them; without this header a
    browser may reuse a changed module from its heuristic cache next to a new entry module. On
    127.0.0.1 a 304 per module costs nothing."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


class InsecureConfiguration(RuntimeError):
    """The admin app refuses to start like this (a weak token, a plain-HTTP public bind)."""


def load_or_create_token(data_dir: Path, configured: str | None = None, *, file: str = ADMIN_TOKEN_FILE) -> str:
    """The configured token (VAULTLINE_ADMIN_TOKEN / VAULTLINE_INGEST_TOKEN, checked by Settings)
    wins; otherwise DIR/<file>, created 0600 with a random token on first run. A stored token
    that is empty (a crash mid-write, `> admin-token`), a placeholder or short is refused."""
    if configured:
        return configured
    path = data_dir / file
    token = load_or_create_secret(path, lambda: secrets.token_urlsafe(32))
    problem = token_problem(token)
    if problem:
        raise InsecureConfiguration(
            f"{path} {problem}: delete the file to have a new random token made on the next start, "
            f"or write one of at least {MIN_TOKEN_LENGTH} random characters into it"
        )
    return token


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """A non-loopback bind over plain HTTP exposes the token and the session cookie to the
    network: refused unless TLS is configured or the operator said --insecure-bind."""
    host = settings.admin_host
    if is_loopback(host) or settings.admin_tls_cert is not None or settings.admin_insecure_bind:
        return
    raise InsecureConfiguration(
        f"refusing to serve the admin app on {host} over plain HTTP: anyone on the network could read "
        "the admin token and session cookie. Set VAULTLINE_ADMIN_TLS_CERT and VAULTLINE_ADMIN_TLS_KEY, "
        "or bind 127.0.0.1 (behind a TLS proxy), or pass --insecure-bind (VAULTLINE_ADMIN_INSECURE_BIND=1) "
        "when the network is yours alone (e.g. a container published on loopback)"
    )


def trusted_hosts(settings: Settings) -> list[str]:
    """Host names the admin app answers to: loopback, the bind address, this machine's names
    (for a non-loopback bind) and VAULTLINE_ADMIN_TRUSTED_HOSTS."""
    hosts = ["127.0.0.1", "localhost", "::1"]
    if settings.admin_host not in ("", "0.0.0.0", "::"):
        hosts.append(settings.admin_host)
    if not is_loopback(settings.admin_host):
        hosts += [socket.gethostname(), socket.getfqdn()]
    return [h.lower() for h in dict.fromkeys(hosts + list(settings.admin_trusted_hosts))]


@dataclass(frozen=True)
class AdminSecurity:
    """What a composition root (`run`, `admin`) hands the admin app and its server."""

    token: str
    ingest_token: str
    trusted_hosts: list[str]
    tls: tuple[Path, Path] | None


def admin_security(settings: Settings) -> AdminSecurity:
    """Tokens (created on first use), trusted hosts and TLS files for the admin app; raises
    InsecureConfiguration, before anything starts, for what must not run."""
    check_bind(settings)
    tls = None
    if settings.admin_tls_cert is not None and settings.admin_tls_key is not None:
        tls = (settings.admin_tls_cert, settings.admin_tls_key)
        for name, path in zip(("VAULTLINE_ADMIN_TLS_CERT", "VAULTLINE_ADMIN_TLS_KEY"), tls):
            if not path.is_file():
                raise InsecureConfiguration(f"{name} names {path}, which is not a file")
    return AdminSecurity(
        token=load_or_create_token(settings.data_dir, settings.admin_token),
        ingest_token=load_or_create_token(settings.data_dir, settings.ingest_token, file=INGEST_TOKEN_FILE),
        trusted_hosts=trusted_hosts(settings),
        tls=tls,
    )


class Sessions:
    """Session cookies: `id.expiry.signature`, signed with a key derived from the admin token.
    The cookie never holds the token; a session ends at its expiry, at sign-out (revoked in this
    process) and for every session at once when the admin token changes."""

    def __init__(self, token: str, max_age: int = SESSION_MAX_AGE) -> None:
        self._key = hashlib.sha256(b"vaultline-session\0" + token.encode()).digest()
        self.max_age = max_age
        self._revoked: dict[str, int] = {}  # session id -> expiry (forgotten once expired)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        payload = f"{secrets.token_urlsafe(24)}.{int(time.time()) + self.max_age}"
        return f"{payload}.{self._sign(payload)}"

    def _parse(self, cookie: str) -> tuple[str, int] | None:
        sid, _, rest = cookie.partition(".")
        expiry, _, signature = rest.partition(".")
        if not (sid and expiry.isdigit() and signature):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{sid}.{expiry}")):
            return None
        return sid, int(expiry)

    def valid(self, cookie: str) -> bool:
        parsed = self._parse(cookie)
        return parsed is not None and parsed[1] > time.time() and parsed[0] not in self._revoked

    def revoke(self, cookie: str) -> None:
        parsed = self._parse(cookie)
        if parsed is None:
            return
        now = time.time()
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[parsed[0]] = parsed[1]


class FailureThrottle:
    """At most `limit` failed sign-ins or wrong tokens per client in `window` seconds; after
    that the client waits (HTTP 429) until the oldest failure leaves the window."""

    def __init__(self, limit: int = 10, window: float = 300.0, max_clients: int = 10_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._failures.get(client, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def wait(self, client: str) -> float:
        """Seconds `client` must wait before its next attempt (0: go ahead)."""
        now = time.monotonic()
        q = self._recent(client, now)
        return max(0.0, q[0] + self.window - now) if len(q) >= self.limit else 0.0

    def fail(self, client: str) -> None:
        now = time.monotonic()
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._failures = {c: q for c, q in self._failures.items() if self._recent(c, now)}
            if len(self._failures) >= self.max_clients:  # still full: forget the oldest client
                self._failures.pop(next(iter(self._failures)))
        q = self._recent(client, now)
        q.append(now)
        self._failures[client] = q


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def too_many_failures(retry_after: float) -> JSONResponse:
    return JSONResponse(
        {"error": "too many failed sign-ins from this address; try again later"},
        status_code=429,
        headers={"Retry-After": str(max(1, int(retry_after + 0.999)))},
    )


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
    ingest_token: str | None = None  # POST /api/ingest only (the ComfyUI node)
    # Host header check; None: none (the composition roots pass trusted_hosts(settings)).
    trusted_hosts: list[str] | None = None


def services(request: Request) -> Services:
    """FastAPI dependency: the ports of the running stack."""
    svc = request.app.state.ctx.services
    if svc is None:
        raise HTTPException(503, "this admin app was started without the pipeline's services")
    return svc


def context(request: Request) -> AdminContext:
    return request.app.state.ctx


class TokenAuth:
    """Pure ASGI middleware: constant-time token (or session cookie) check on every non-public
    path. The ingest token passes for INGEST_ROUTE only; wrong tokens count towards the throttle."""

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        sessions: Sessions,
        throttle: FailureThrottle,
        ingest_token: str | None = None,
    ) -> None:
        if not token.strip():
            raise ValueError("the admin token is empty: that would let anyone in")
        self.app = app
        self.token = token.encode()
        self.ingest_token = ingest_token.encode() if ingest_token and ingest_token.strip() else None
        self.sessions = sessions
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = StarletteRequest(scope)
        bearer = _bearer(request)
        cookie = request.cookies.get(COOKIE) or None
        if bearer is None and cookie is not None and _cross_site(request):
            response: Response = JSONResponse({"error": "cross-site request refused"}, status_code=403)
        elif bearer is None and cookie is None:  # an empty token counts as none
            if _wants_page(request):
                response = RedirectResponse("/login", status_code=303)
            else:
                response = JSONResponse({"error": "admin token required"}, status_code=401)
        elif bearer is not None:
            client = client_of(scope)
            wait = self.throttle.wait(client)
            if wait:
                response = too_many_failures(wait)
            elif hmac.compare_digest(bearer.encode(), self.token):
                await self.app(scope, receive, send)
                return
            elif self.ingest_token is not None and hmac.compare_digest(bearer.encode(), self.ingest_token):
                if (request.method, scope["path"]) == INGEST_ROUTE:
                    await self.app(scope, receive, send)
                    return
                response = JSONResponse({"error": "the ingest token may only POST /api/ingest"}, status_code=403)
            else:
                self.throttle.fail(client)
                response = JSONResponse({"error": "wrong admin token"}, status_code=403)
        elif self.sessions.valid(cookie or ""):
            await self.app(scope, receive, send)
            return
        elif _wants_page(request):  # expired, signed out, or the token changed: sign in again
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/")
        else:
            response = JSONResponse({"error": "session expired or signed out: sign in again"}, status_code=403)
        await response(scope, receive, send)


class TrustedHosts:
    """Pure ASGI middleware: answer only requests whose Host header names this server, so a web
    page on another site cannot reach the app through DNS rebinding."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.hosts:
                response = JSONResponse(
                    {"error": "unknown Host header; add the name to VAULTLINE_ADMIN_TRUSTED_HOSTS"}, status_code=400
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(header: str) -> str:
    """`example.com:8765` -> example.com, `[::1]:8765` -> ::1."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


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


def _bearer(request: StarletteRequest) -> str | None:
    """The bearer token, or None when there is none or it is empty (never a match for anything)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


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
    app.mount("/static", RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
    _install_error_mapping(app)
    app.state.sessions = Sessions(ctx.token)
    app.state.throttle = FailureThrottle()
    app.add_middleware(
        TokenAuth,
        token=ctx.token,
        ingest_token=ctx.ingest_token,
        sessions=app.state.sessions,
        throttle=app.state.throttle,
    )
    if ctx.trusted_hosts is not None:
        app.add_middleware(TrustedHosts, hosts=ctx.trusted_hosts)  # outermost: before anything else
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


def _listening(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class AdminServer:
    """uvicorn inside our event loop, on a free port unless one is configured."""

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, tls: tuple[Path, Path] | None = None,
        fallback: bool = False,
    ) -> None:
        """`tls`: (certificate, key) PEM files to serve https. `fallback`: when `port` is taken,
        serve on a free one instead of failing (see `fell_back`)."""
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
            ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None,
        )  # fmt: skip
        self.server = _Server(config)
        self.host = host
        self.port = port
        self.fallback = fallback
        self.fell_back = False
        self.scheme = "https" if tls else "http"

    async def serve(self) -> None:
        if not self.fallback or self.port == 0:
            await self.server.serve()
            return
        # Bound and listening here, not probed then bound by uvicorn: two workers starting at once
        # would both see the port free and one would fail. Listen in the same step: with
        # SO_REUSEADDR two sockets may bind one port until one of them listens.
        try:
            sock = _listening(self.host, self.port)
        except OSError:
            sock = _listening(self.host, 0)
            self.fell_back = True
        try:
            await self.server.serve(sockets=[sock])
        finally:
            sock.close()

    @property
    def started(self) -> bool:
        return self.server.started

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
