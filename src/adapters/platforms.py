"""Upload platforms behind one set of steps (handlers.upload.Platform).

- LocalPlatform: no account needed; the media uuid is generated and the upload handler files
  the image under 5_uploaded/<vault>/, so the whole pipeline runs on a laptop.
- FanvuePlatform: the Fanvue API through FanvueClient (multipart upload, vault folders)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog

from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.errors import FanvueError
from vaultline.events import NAMESPACE
from vaultline.handlers.upload import PlatformRejected
from vaultline.settings import FanvueConfig

log = structlog.get_logger("vaultline.platforms")

PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last


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


class PlatformResolver:
    """Which platform a creator uploads to: Fanvue when tokens are stored for it (after
    `vaultline fanvue login`), the local platform otherwise. One client per creator."""

    def __init__(self, pool: Any, data_dir: Any, fanvue: FanvueConfig | None = None) -> None:
        self._pool = pool
        self._data_dir = data_dir
        self._fanvue = fanvue or FanvueConfig()
        self._cache: dict[str, Any] = {}

    async def has_fanvue(self, creator: str) -> bool:
        try:
            return bool(
                await self._pool.fetchval(
                    "SELECT 1 FROM platform_tokens WHERE creator = $1 AND platform = 'fanvue'", creator
                )
            )
        except Exception:  # table missing on an unmigrated database: no Fanvue
            return False

    async def __call__(self, creator: str) -> Any:
        if creator not in self._cache:
            self._cache[creator] = await self._build(creator)
        return self._cache[creator]

    async def _build(self, creator: str) -> Any:
        if not await self.has_fanvue(creator):
            return LocalPlatform()
        from vaultline.adapters.fanvue.connect import fanvue_client, token_store

        client = fanvue_client(creator, self._fanvue, token_store(self._pool, self._data_dir))
        return FanvuePlatform(client)

    async def close(self) -> None:
        for platform in self._cache.values():
            client = getattr(platform, "client", None)
            if client is not None:
                await client.aclose()
        self._cache.clear()
