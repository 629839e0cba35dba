"""Upload platforms behind one set of steps (handlers.upload.Platform).

- LocalPlatform: no account needed; the media uuid is generated and the upload handler files
  the image under 5_uploaded/<vault>/, so the whole pipeline runs on a laptop.
- FanvuePlatform: the Fanvue API through FanvueClient (multipart upload, vault folders)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from vaultline.adapters.db.rate_bucket import PostgresTokenBucket
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.errors import (
    FanvueError,
    RateLimited,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)
from vaultline.domain.retry import TransientError
from vaultline.events import NAMESPACE
from vaultline.handlers.sends import PlatformMessage, SendOutcomeUnknown, SendRefused
from vaultline.handlers.upload import PlatformRejected
from vaultline.settings import FanvueConfig, Settings

log = structlog.get_logger("vaultline.platforms")

PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
FANVUE_RATE_LIMIT, FANVUE_RATE_PERIOD_S = 200, 60.0  # per creator (fanvue-api.md)


class LocalPlatform:
    """`messages_dir`: where sent messages are recorded (one JSON line per message under
    `<dir>/<fan>.jsonl`), so a send is visible and reconcilable with no account."""

    name = "local"

    def __init__(self, messages_dir: Path | None = None) -> None:
        self.messages_dir = messages_dir

    def _messages_file(self, fan_id: str) -> Path | None:
        return self.messages_dir / f"{fan_id}.jsonl" if self.messages_dir is not None else None

    async def send_message(self, fan_id: str, text: str | None, media_uuids: Sequence[str], price_cents: int | None) -> str:
        message_uuid = str(uuid.uuid4())
        path = self._messages_file(fan_id)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"uuid": message_uuid, "text": text, "mediaUuids": list(media_uuids), "price": price_cents,
                               "sentAt": datetime.now(timezone.utc).isoformat()})
            with path.open("a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        log.info("local platform: message recorded", fan=fan_id, message_uuid=message_uuid, media=len(media_uuids))
        return message_uuid

    async def fan_messages(self, fan_id: str, *, limit: int = 50) -> list[PlatformMessage]:
        path = self._messages_file(fan_id)
        if path is None or not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue  # a torn last line
            media = tuple(m.get("mediaUuids") or ())
            out.append(PlatformMessage(m["uuid"], media, _when(m.get("sentAt")), m.get("price"), text=m.get("text"),
                                       has_media=bool(media)))
        return out[::-1][:limit]

    async def create_session(self, content_id: uuid.UUID, filename: str) -> tuple[str, str]:
        media = str(uuid.uuid5(NAMESPACE, f"local-media:{content_id}"))  # stable across retries
        return media, media

    async def upload_parts(self, upload_id: str, data: bytes) -> list[dict[str, Any]]:
        return [{"part_number": 1, "size": len(data)}]

    async def complete(self, upload_id: str, parts: list[dict[str, Any]], media_uuid: str) -> None:
        return None

    async def wait_ready(self, media_uuid: str) -> None:
        return None

    async def attach(self, vault_folder: str, media_uuid: str) -> None:
        return None

    async def create_post(self, media_uuid: str, post: dict[str, Any]) -> str | None:
        log.info("local platform: feed post recorded, not published", media_uuid=media_uuid, post=post)
        return f"local-post-{media_uuid}"

    async def find_post(self, media_uuid: str) -> str | None:
        return None  # nothing is published: recording the post again is harmless


def _translate(e: FanvueError) -> Exception:
    # Transient ones (429, 5xx, timeouts) go back to the bus for a delayed retry.
    return e if e.transient else PlatformRejected(f"Fanvue refused ({e.status}): {e.message}")


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def message_from_fanvue(m: dict[str, Any], creator_uuid: str | None = None) -> PlatformMessage:
    """A message of GET /chats/{fan}/messages as the send use case sees it."""
    pricing = m.get("pricing") or {}
    price = (pricing.get("USD") or {}).get("price") if isinstance(pricing, dict) else None
    if price is None and isinstance(m.get("price"), (int, float)):
        price = m["price"]
    sender = (m.get("sender") or {}).get("uuid") if isinstance(m.get("sender"), dict) else m.get("senderUuid")
    return PlatformMessage(
        uuid=str(m.get("uuid") or m.get("messageUuid") or ""),
        media_uuids=tuple(str(u) for u in (m.get("mediaUuids") or [])),
        sent_at=_when(m.get("sentAt") or m.get("createdAt")),
        price_cents=int(price) if isinstance(price, (int, float)) else None,
        purchased_at=_when(m.get("purchasedAt")),
        from_creator=creator_uuid is None or sender is None or sender == creator_uuid,
        text=m.get("text"),
        has_media=bool(m.get("hasMedia")) if m.get("hasMedia") is not None else None,
    )


class FanvuePlatform:
    name = "fanvue"

    def __init__(self, client: FanvueClient, *, ready_timeout: float = 120.0, ready_poll: float = 2.0) -> None:
        self.client = client
        self.ready_timeout = ready_timeout
        self.ready_poll = ready_poll

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except FanvueError as e:
            raise _translate(e) from e

    async def create_session(self, content_id: uuid.UUID, filename: str) -> tuple[str, str]:
        session = await self._call(self.client.create_upload(str(content_id), filename, "image"))
        return session.media_uuid, session.upload_id

    async def upload_parts(self, upload_id: str, data: bytes) -> list[dict[str, Any]]:
        parts = []
        for n, start in enumerate(range(0, max(len(data), 1), PART_SIZE), start=1):
            part = await self._call(self.client.upload_part(upload_id, n, data[start : start + PART_SIZE]))
            parts.append({"part_number": part.part_number, "etag": part.etag})
        return parts

    async def complete(self, upload_id: str, parts: list[dict[str, Any]], media_uuid: str) -> None:
        await self._call(
            self.client.complete_upload(upload_id, [(p["part_number"], p["etag"]) for p in parts], media_uuid=media_uuid)
        )

    async def wait_ready(self, media_uuid: str) -> None:
        await self._call(self.client.wait_media_ready(media_uuid, timeout=self.ready_timeout, poll=self.ready_poll))

    async def attach(self, vault_folder: str, media_uuid: str) -> None:
        folder = await self._call(self.client.ensure_vault_folder(vault_folder))
        await self._call(self.client.attach_to_folder(folder, media_uuid))

    async def create_post(self, media_uuid: str, post: dict[str, Any]) -> str | None:
        publish_at = datetime.fromisoformat(post["publish_at"]) if post.get("publish_at") else None
        result = await self._call(
            self.client.create_post(post.get("text") or "", post.get("audience") or "subscribers", [media_uuid], publish_at)
        )
        return (result or {}).get("uuid")

    async def send_message(self, fan_id: str, text: str | None, media_uuids: Sequence[str], price_cents: int | None) -> str:
        try:
            return await self.client.send_chat_message(fan_id, text, media_uuids, price_cents)
        except TransportError as e:
            if e.ambiguous:
                raise SendOutcomeUnknown(f"Fanvue did not answer: {e.message}") from e
            raise SendRefused(f"could not reach Fanvue: {e.message}") from e
        except RateLimited as e:  # a 429 was never processed
            raise SendRefused(f"Fanvue rate limit: {e.message}") from e
        except UnexpectedResponse as e:  # a 2xx we cannot read: it was probably sent
            raise SendOutcomeUnknown(f"Fanvue answered without a message uuid: {e.message}") from e
        except FanvueError as e:
            if e.transient or (e.status or 0) >= 500:
                raise SendOutcomeUnknown(f"Fanvue answered {e.status}: {e.message}") from e
            what = "validation failed" if isinstance(e, ValidationError) else f"HTTP {e.status}"
            raise SendRefused(f"{what}: {e.message}") from e

    async def fan_messages(self, fan_id: str, *, limit: int = 50) -> list[PlatformMessage]:
        items, _ = await self.client.chat_messages(fan_id, size=min(50, limit))
        if getattr(self, "_me", None) is None:
            try:
                self._me = str((await self.client.whoami()).get("uuid") or "") or None
            except FanvueError:
                self._me = None
        return [message_from_fanvue(m, self._me) for m in items]

    async def find_post(self, media_uuid: str) -> str | None:
        post = await self._call(self.client.find_post_with_media(media_uuid))
        return str(post["uuid"]) if post and post.get("uuid") else None


def fanvue_budget(pool: Any, creator: str) -> PostgresTokenBucket:
    """Fanvue's request budget of a creator (200 / 60 s), shared by every process through
    PostgreSQL: N upload workers together stay within it."""
    return PostgresTokenBucket(pool, f"fanvue:{creator}", FANVUE_RATE_LIMIT, FANVUE_RATE_PERIOD_S)


class PlatformResolver:
    """Which platform a creator uploads to: Fanvue when tokens are stored for it (after
    `vaultline fanvue login`), the local platform otherwise. One client per creator.

    The platform never changes silently: only "no tokens stored" means local; a database
    error is a TransientError (the upload is retried, never filed locally instead). Only the
    Fanvue answer is cached: "local" is checked again on every call, so a login takes effect
    on the next upload without a restart."""

    def __init__(self, pool: Any, data_dir: Any, fanvue: FanvueConfig | None = None) -> None:
        self._pool = pool
        self._data_dir = data_dir
        self._fanvue = fanvue  # None: the VAULTLINE_FANVUE_* environment, read when a client is built
        self._cache: dict[str, Any] = {}
        self._locals: dict[str, LocalPlatform] = {}
        self._building = asyncio.Lock()

    async def has_fanvue(self, creator: str) -> bool:
        try:
            found = await self._pool.fetchval(
                "SELECT 1 FROM platform_tokens WHERE creator = $1 AND platform = 'fanvue'", creator
            )
        except Exception as e:
            raise TransientError(f"cannot tell whether {creator} has Fanvue tokens: {e!r}") from e
        return bool(found)

    async def __call__(self, creator: str) -> Any:
        cached = self._cache.get(creator)
        if cached is not None:
            return cached
        if not await self.has_fanvue(creator):  # not cached as Fanvue: the next call sees a login
            local = self._locals.get(creator)
            if local is None:
                local = self._locals[creator] = LocalPlatform(Path(self._data_dir) / "local-platform" / creator / "messages")
            return local
        async with self._building:  # one client per creator, even when two uploads ask at once
            if creator not in self._cache:
                self._cache[creator] = await self._build(creator)
        return self._cache[creator]

    async def _build(self, creator: str) -> Any:
        from vaultline.adapters.fanvue.connect import fanvue_client, token_store

        if self._fanvue is None:
            self._fanvue = Settings().fanvue
        client = fanvue_client(creator, self._fanvue, token_store(self._pool, self._data_dir),
                               rate_limiter=fanvue_budget(self._pool, creator))
        return FanvuePlatform(client)

    async def close(self) -> None:
        for platform in self._cache.values():
            client = getattr(platform, "client", None)
            if client is not None:
                await client.aclose()
        self._cache.clear()
