"""GET /api/problems: watched files that never became an image (newest first), the same list
`vaultline status` shows. Token-authenticated like every admin route."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vaultline.adapters.db.problems import recent_problems


def ops_routes(pool: Any) -> list[Route]:
    async def problems(request: Request) -> JSONResponse:
        try:
            limit = min(500, max(1, int(request.query_params.get("limit", "50"))))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        return JSONResponse({"problems": await recent_problems(pool, limit)})

    return [Route("/api/problems", problems, methods=["GET"])]
