"""POST /webhooks/fanvue/{event}: Fanvue's platform webhooks (register one URL per event in the
Fanvue Developer Area: message-received, message-read, purchase, tip, new-subscriber,
new-follower). Authenticated by the HMAC signature (VAULTLINE_FANVUE_WEBHOOK_SECRET), not by the
admin token. Answered 2xx only once the event is committed to the outbox; the handlers do the
work after the relay publishes it."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse

from vaultline.adapters.db.fanvue import PostgresFanvueStore
from vaultline.domain.errors import NotFound
from vaultline.domain.webhooks import SIGNATURE_HEADER, WEBHOOK_EVENTS
from vaultline.entrypoints.admin import Services, services
from vaultline.events import utcnow
from vaultline.handlers.webhooks import BadSignature, receive_webhook

log = structlog.get_logger("vaultline.webhooks")

PREFIX = "/webhooks/fanvue/"  # public: entrypoints.admin.PUBLIC_PREFIXES
MAX_BODY = 1024 * 1024  # Fanvue's payloads are a few hundred bytes; this path is on the internet

router = APIRouter(tags=["webhooks"])


class WebhookAck(BaseModel):
    status: Literal["recorded", "unknown_recipient"]
    events: list[uuid.UUID]
    new: int  # events not recorded before (0 when Fanvue redelivers)
    reason: str | None = None


_DOC = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "Fanvue's flat event payload (research §6.3), signed as a whole"}}}},
    "parameters": [{"name": SIGNATURE_HEADER, "in": "header", "required": True,
                    "schema": {"type": "string", "example": "t=1764500000,v0=<hex HMAC-SHA256>"}}],
}


@router.post(
    f"{PREFIX}{{event}}",
    response_model=WebhookAck,
    responses={
        202: {"model": WebhookAck, "description": "unknown recipient: kept for inspection, nothing published"},
        400: {"description": "signed, but the body is not a readable event (kept for inspection)"},
        401: {"description": "missing, wrong or stale signature: nothing recorded"},
        404: {"description": "not a Fanvue webhook event we receive"},
        413: {"description": "body larger than 1 MiB: nothing recorded"},
    },
    openapi_extra={**_DOC, "security": []},  # no admin token: the signature authenticates
    summary="Receive one Fanvue webhook (signature-authenticated)",
)
async def fanvue_webhook(event: str, request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    if event not in WEBHOOK_EVENTS:
        raise NotFound(f"unknown Fanvue webhook event {event!r}; known: {', '.join(WEBHOOK_EVENTS)}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return JSONResponse({"error": "webhook body too large"}, status_code=413)
    body = await request.body()  # the exact bytes Fanvue signed
    if len(body) > MAX_BODY:
        return JSONResponse({"error": "webhook body too large"}, status_code=413)
    try:
        outcome = await receive_webhook(event, body, request.headers.get(SIGNATURE_HEADER),
                                        secret=svc.settings.fanvue_webhook_secret, now=utcnow(),
                                        store=PostgresFanvueStore(svc.pool))
    except BadSignature as e:
        log.warning("fanvue webhook refused", webhook=event, reason=str(e))
        return JSONResponse({"error": f"webhook signature refused: {e}"}, status_code=401)
    if outcome.status == "unreadable":
        return JSONResponse({"error": f"unreadable {event} webhook (kept for inspection): {outcome.reason}"},
                            status_code=400)
    ack = WebhookAck(status=outcome.status, events=[uuid.UUID(e) for e in outcome.events], new=outcome.new,
                     reason=outcome.reason)
    return JSONResponse(ack.model_dump(mode="json"), status_code=200 if outcome.status == "recorded" else 202)
