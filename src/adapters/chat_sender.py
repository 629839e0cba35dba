"""ChatSender: the one adapter that can put a chat message on a platform. Only the inbox's
approval action (handlers/inbox.send) is given one.

SEAM (issue 9): this is the interim sender. At merge the lead replaces it in
bootstrap.chat_sender() with the sales engineer's send use case (reserve a `sends` row, call the
platform's `send_message`, publish media.sent), which raises Conflict when the send guard
refuses. Until then:
- the offer is checked against ContentOfferSource (uploaded PPV, not sent to this fan in chat,
  no near-copy sent): a refusal is a Conflict and nothing is sent;
- a platform with a `send_message(fan_id, text, media_uuids, price_cents)` coroutine is called
  with it; the local platform records the message in DIR/local-platform/<creator>/chat.jsonl."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from vaultline.adapters.db.chat import ContentOfferSource
from vaultline.domain.errors import Conflict, Invalid
from vaultline.events import PpvOffer, utcnow
from vaultline.handlers.ports import SentChat


class LocalChatLog:
    """What the local platform 'sent': one JSON line per message, for a person or a test."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def path(self, creator: str) -> Path:
        return self.data_dir / "local-platform" / creator / "chat.jsonl"

    def _append(self, creator: str, record: dict[str, Any]) -> None:
        path = self.path(creator)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    async def send(self, creator: str, fan_id: str, text: str, media_uuids: list[str], price_cents: int | None) -> str:
        message_uuid = str(uuid.uuid4())
        record = {"message_uuid": message_uuid, "fan_id": fan_id, "text": text, "media_uuids": media_uuids,
                  "price_cents": price_cents, "sent_at": utcnow().isoformat()}  # fmt: skip
        await asyncio.to_thread(self._append, creator, record)
        return message_uuid

    def read(self, creator: str) -> list[dict[str, Any]]:
        path = self.path(creator)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class PlatformChatSender:
    def __init__(self, pool: Any, platforms: Any, data_dir: Path) -> None:
        self._offers = ContentOfferSource(pool)
        self._platforms = platforms  # creator -> platform (adapters.platforms.PlatformResolver)
        self.local = LocalChatLog(data_dir)

    async def _guard(self, creator: str, fan_id: str, offer: PpvOffer) -> str:
        eligible = {c.content_id: c for c in await self._offers.eligible(creator, fan_id, limit=10_000)}
        candidate = eligible.get(offer.content_id)
        if candidate is None:
            raise Conflict(
                f"content {offer.content_id} cannot be offered to fan {fan_id}: already sent to them, a near-copy "
                "of something they have, or not uploaded PPV"
            )
        if not candidate.media_uuid:
            raise Conflict(f"content {offer.content_id} has no platform media to send")
        return candidate.media_uuid

    async def send(self, creator: str, fan_id: str, text: str, *, offer: PpvOffer | None, sent_by: str) -> SentChat:
        media = [await self._guard(creator, fan_id, offer)] if offer else []
        price = offer.price_cents if offer else None
        platform = await self._platforms(creator)
        send_message = getattr(platform, "send_message", None)
        if send_message is not None:
            message_uuid = await send_message(fan_id, text, media, price)
        elif getattr(platform, "name", "") == "local":
            message_uuid = await self.local.send(creator, fan_id, text, media, price)
        else:
            raise Invalid(f"the {getattr(platform, 'name', '?')} platform cannot send chat messages in this build")
        return SentChat(platform=getattr(platform, "name", "local"), message_uuid=message_uuid, media_uuids=tuple(media))
