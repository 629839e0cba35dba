"""ChatSender: the one adapter that puts a chat message on a platform. Only the inbox's approval
action (handlers/inbox.send) is given one (bootstrap.chat_sender).

- With an offer, the message goes through issue 9's send use case (handlers.sends.send): the
  `sends` row is checked against the fan's sends and reserved before the platform is called,
  so a fan never gets the same content (nor a near-copy) twice; a refusal is a Conflict and
  nothing is sent;
  `media.sent` goes out through the outbox; an ambiguous platform failure is reconciled by
  reading the fan's messages.
- Text alone is one platform `send_message` call (no content: nothing for the guard to check).
On the local platform both are recorded under DIR/local-platform/<creator>/messages/<fan>.jsonl."""

from __future__ import annotations

from typing import Any

import asyncpg

from vaultline.domain.errors import Conflict
from vaultline.events import PpvOffer
from vaultline.handlers.ports import SentChat


class GuardedChatSender:
    def __init__(self, pool: asyncpg.Pool, platforms: Any) -> None:
        self._pool = pool
        self._platforms = platforms  # creator -> platform (adapters.platforms.PlatformResolver)

    async def send(self, creator: str, fan_id: str, text: str, *, offer: PpvOffer | None, sent_by: str) -> SentChat:
        from vaultline.adapters.db.sends import PostgresSendStore
        from vaultline.handlers import sends

        platform = await self._platforms(creator)
        if offer is None:
            return SentChat(platform=platform.name, message_uuid=await platform.send_message(fan_id, text, [], None))
        req = sends.SendRequest(creator=creator, fan_id=fan_id, content_ids=(offer.content_id,),
                                price_cents=offer.price_cents or None, text=text, sent_by=sent_by)  # fmt: skip
        result = await sends.send(req, store=PostgresSendStore(self._pool), platform=platform)
        if result.status != "sent" or not result.message_uuid:
            raise Conflict(f"the message with the offer did not go out: {result.reason or result.status}")
        media = await self._pool.fetchval("SELECT fanvue_media_uuid FROM content WHERE id = $1", offer.content_id)
        return SentChat(platform=platform.name, message_uuid=result.message_uuid, media_uuids=(media,) if media else ())
