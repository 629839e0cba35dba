"""`GET /metrics` (Prometheus text format) for the admin app and every `vaultline worker`.

On the admin app, /metrics is one more route behind the app's own protection (token or
session, trusted hosts, throttle); with VAULTLINE_METRICS_PUBLIC (a scrape on a private
network) it is answered in front of the app, without any. `metrics_server` serves it alone on
a worker's metrics port, behind the admin token as a bearer header unless public."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vaultline.adapters import metrics

PATH = "/metrics"
Refresh = Callable[[], Awaitable[None]]


def runtime_refresh(runtime: Any) -> Refresh:
    """Gauges from the runtime's own Postgres pool and JetStream context."""

    async def refresh() -> None:
        ports = getattr(runtime, "ports", None)
        await metrics.refresh(getattr(runtime, "pool", None), getattr(ports, "js", None))

    return refresh


class MetricsApp:
    """ASGI: /metrics here (token-checked unless public), everything else to `inner`
    (404 without one; /health answers for a standalone worker server)."""

    def __init__(self, inner: ASGIApp | None, *, token: str | None, public: bool, refresh: Refresh | None) -> None:
        if not public and not token:
            raise ValueError("/metrics needs the admin token unless VAULTLINE_METRICS_PUBLIC is set")
        self.inner = inner
        self.token = (token or "").encode()
        self.public = public
        self.refresh = refresh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            if self.inner is not None:
                await self.inner(scope, receive, send)
                return
            if scope["type"] != "http":
                return
            body = {"status": "ok"} if scope["path"] == "/health" else {"error": "not found"}
            await JSONResponse(body, status_code=200 if scope["path"] == "/health" else 404)(scope, receive, send)
            return
        await self._metrics(Request(scope))(scope, receive, send)

    def _metrics(self, request: Request) -> Any:
        if request.method not in ("GET", "HEAD"):
            return JSONResponse({"error": "method not allowed"}, status_code=405)
        if not self.public:
            auth = request.headers.get("authorization", "")
            given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if not given:
                return JSONResponse({"error": "admin token required"}, status_code=401)
            if not hmac.compare_digest(given.encode(), self.token):
                return JSONResponse({"error": "wrong admin token"}, status_code=403)
        return _Exposition(self.refresh)


class _Exposition:
    def __init__(self, refresh: Refresh | None) -> None:
        self.refresh = refresh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.refresh is not None:
            await self.refresh()
        body, content_type = metrics.exposition()
        await Response(body, media_type=content_type)(scope, receive, send)


def with_metrics(app: Any, settings: Any, token: str, runtime: Any) -> ASGIApp:
    """The admin app (FastAPI) with /metrics: a route behind its middlewares, or in front of
    them all when settings.metrics_public."""
    refresh = runtime_refresh(runtime)
    if settings.metrics_public:
        return MetricsApp(app, token=None, public=True, refresh=refresh)

    async def endpoint(request: Request) -> Response:
        await refresh()
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app.add_route(PATH, endpoint, methods=["GET"], include_in_schema=False)
    return app


def metrics_server(*, host: str, port: int, token: str | None, public: bool, refresh: Refresh | None) -> Any:
    """A worker's own small HTTP server for /metrics (and /health): an AdminServer (uvicorn in
    our loop) around MetricsApp alone; a taken port falls back to a free one (several workers on
    one machine)."""
    from vaultline.entrypoints.admin import AdminServer

    return AdminServer(MetricsApp(None, token=token, public=public, refresh=refresh), host=host, port=port, fallback=True)
