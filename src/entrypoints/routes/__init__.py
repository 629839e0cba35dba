"""One router per area of the admin app; `create_app` includes every router listed here.
Add an area by writing `routes/<area>.py` with `router = APIRouter()` and listing it below."""

from __future__ import annotations

from fastapi import APIRouter

from vaultline.entrypoints.routes import fans, inbox, ingest, ops, pages, review, webhooks

ROUTERS: list[APIRouter] = [
    review.router,
    ingest.router,
    pages.router,
    ops.router,
    webhooks.router,
    fans.router,
    inbox.router,
]
