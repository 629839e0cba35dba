"""Upload platforms behind one set of steps (handlers.upload.Platform).

- LocalPlatform: no account needed; the media uuid is generated and the upload handler files
  the image under 5_uploaded/<vault>/, so the whole pipeline runs on a laptop.
- FanvuePlatform: the Fanvue API through FanvueClient (multipart upload, vault folders)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import structlog

from vaultline.adapters.db.rate_bucket import PostgresTokenBucket
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.errors import FanvueError
from vaultline.domain.retry import TransientError
from vaultline.events import NAMESPACE
from vaultline.handlers.upload import PlatformRejected

log = structlog.get_logger("vaultline.platforms")

PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
FANVUE_RATE_LIMIT, FANVUE_RATE_PERIOD_S = 200, 60.0  # per creator (fanvue-api.md)


class LocalPlatform:
    name = "local"

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

    def __init__(self, pool: Any, data_dir: Any) -> None:
        self._pool = pool
        self._data_dir = data_dir
        self._cache: dict[str, Any] = {}
        self._local = LocalPlatform()
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
        if not await self.has_fanvue(creator):
            return self._local  # not cached: the next call sees a login
        async with self._building:  # one client per creator, even when two uploads ask at once
            if creator not in self._cache:
                self._cache[creator] = await self._build(creator)
        return self._cache[creator]

    async def _build(self, creator: str) -> Any:
        from vaultline.adapters.fanvue.tokens import PostgresTokenStore, TokenManager, load_cipher
        from vaultline.entrypoints.fanvue_cli import FanvueConfig

        cfg = FanvueConfig.from_env()
        oauth = cfg.oauth() if cfg.client_id else None

        async def refresher(current: Any) -> Any:
            if oauth is None:
                raise PlatformRejected("Fanvue token expired and VAULTLINE_FANVUE_CLIENT_ID is not set to refresh it")
            return await oauth.refresh_tokens(current)

        store = PostgresTokenStore(self._pool, load_cipher(self._data_dir))
        client = FanvueClient(
            TokenManager(store, refresher, creator), creator=creator, base_url=cfg.base_url, path_prefix=cfg.path_prefix,
            rate_limiter=fanvue_budget(self._pool, creator),
        )  # fmt: skip
        return FanvuePlatform(client)

    async def close(self) -> None:
        for platform in self._cache.values():
            client = getattr(platform, "client", None)
            if client is not None:
                await client.aclose()
        self._cache.clear()
