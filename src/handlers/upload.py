"""upload: image.approved (or media.upload_retry_requested) -> the image in the platform's vault
folder -> media.uploaded, exactly once per image.

The upload is a small state machine persisted per content (table `uploads`):

    pending -> created (session + media uuid) -> parts_done -> completed -> ready -> attached
            [-> posted, when the approval asked for a feed post] -> done

Each step is committed before the next starts. A redelivery, a crash or a retry resumes from
the recorded step, so the platform never gets a second media for the same content. `done` is
committed in one transaction with the content row and the media.uploaded outbox event.

Platform errors that cannot succeed (auth after refresh, scope, validation) end the attempt
as `failed` (media.upload_failed, visible in status and review, with a retry action);
transient ones raise TransientError so the bus retries with backoff, and the last allowed
delivery records the failure instead of losing it to the dead letters silently."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from vaultline.domain import library
from vaultline.domain.retry import TransientError
from vaultline.events import (
    Envelope,
    ImageApproved,
    MediaUploadRetryRequested,
    derived_id,
    new_event,
)
from vaultline.handlers.ports import Storage

NAME = "upload"
log = structlog.get_logger("vaultline.upload")

STEPS = ("pending", "created", "parts_done", "completed", "ready", "attached", "posted", "done")


class PlatformRejected(Exception):
    """The platform refused for good (auth after refresh, missing scope, validation)."""


@dataclass
class UploadState:
    content_id: uuid.UUID
    creator: str
    platform: str
    vault: str
    vault_folder: str
    approval_event_id: uuid.UUID
    step: str = "pending"
    media_uuid: str | None = None
    upload_id: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)
    post: dict[str, Any] | None = None
    post_uuid: str | None = None
    error: str | None = None
    failed_step: str | None = None


class UploadStore(Protocol):
    async def start(self, state: UploadState) -> UploadState:
        """Insert the state if this content has none; return the stored one."""

    async def get(self, content_id: uuid.UUID) -> UploadState | None: ...

    async def save(self, state: UploadState) -> None: ...

    async def finish(self, state: UploadState, uploaded: Envelope) -> None:
        """One transaction: step done, the content row, media.uploaded into the outbox."""

    async def fail(self, state: UploadState, failed: Envelope) -> None:
        """One transaction: step failed, the content row, media.upload_failed into the outbox."""

    async def review_key(self, content_id: uuid.UUID) -> tuple[str, str] | None:
        """(review_key, original_filename) of the content, or None."""


class Platform(Protocol):
    """One platform's upload steps. Each is safe to repeat with the same arguments."""

    name: str

    async def create_session(self, content_id: uuid.UUID, filename: str) -> tuple[str, str]:
        """-> (media_uuid, upload_id)"""

    async def upload_parts(self, upload_id: str, data: bytes) -> list[dict[str, Any]]: ...

    async def complete(self, upload_id: str, parts: list[dict[str, Any]], media_uuid: str) -> None: ...

    async def wait_ready(self, media_uuid: str) -> None: ...

    async def attach(self, vault_folder: str, media_uuid: str) -> None: ...

    async def create_post(self, media_uuid: str, post: dict[str, Any]) -> str | None: ...


async def handle(
    event: Envelope,
    *,
    store: UploadStore,
    storage: Storage,
    platform_for: Callable[[str], Any],
    vault_folder_for: Callable[[str, str], str],
    final_attempt: bool = False,
) -> UploadState | None:
    p = event.payload
    cid = uuid.UUID(event.key)
    if isinstance(p, ImageApproved):
        platform = await platform_for(event.creator)
        post = p.post.model_dump(mode="json") if (p.post and p.vault == "feed") else None
        state = await store.start(
            UploadState(
                content_id=cid,
                creator=event.creator,
                platform=platform.name,
                vault=p.vault,
                vault_folder=vault_folder_for(event.creator, p.vault),
                approval_event_id=event.event_id,
                post=post,
            )
        )
    elif isinstance(p, MediaUploadRetryRequested):
        state = await store.get(cid)
        if state is None or state.step != "failed":
            log.warning("retry requested but no failed upload to resume", step=state and state.step)
            return state  # nothing to retry (done, in progress, or never reached the uploader)
        state.step, state.error = state.failed_step or "pending", None
        await store.save(state)
        platform = await platform_for(event.creator)
    else:
        return None

    if state.step in ("done", "failed"):
        return state  # already finished; its event was committed with it
    found = await store.review_key(cid)
    if found is None:
        raise TransientError(f"content {cid} is not projected yet")  # the tracker will catch up
    review_key, original = found
    name = review_key.rsplit("/", 1)[-1]
    log.info("upload resumes", step=state.step, platform=state.platform)

    try:
        await _run_steps(state, store, platform, storage, name)
    except PlatformRejected as e:
        await _fail(state, store, str(e))
        return state
    except Exception as e:
        if final_attempt:
            await _fail(state, store, f"gave up after retries: {e}")
            return state
        raise TransientError(f"upload step after {state.step} failed: {e}") from e

    uploaded = new_event(
        "media.uploaded",
        creator=state.creator,
        key=cid,
        cause=event,
        # From the approval, not from this delivery's event: a retry-driven finish is the same fact.
        event_id=derived_id(state.approval_event_id, "media.uploaded"),
        payload={
            "platform": state.platform,
            "media_uuid": state.media_uuid,
            "vault": state.vault,
            "vault_folder": state.vault_folder,
        },
    )
    await store.finish(state, uploaded)
    state.step = "done"
    await _file_under_uploaded(storage, state, name)
    log.info("uploaded", media_uuid=state.media_uuid, vault_folder=state.vault_folder)
    return state


async def _run_steps(state: UploadState, store: UploadStore, platform: Any, storage: Storage, name: str) -> None:
    async def advance(step: str, **changes: Any) -> None:
        for k, v in changes.items():
            setattr(state, k, v)
        state.step = step
        await store.save(state)

    if state.step == "pending":
        media_uuid, upload_id = await platform.create_session(state.content_id, name)
        await advance("created", media_uuid=media_uuid, upload_id=upload_id)
    if state.step == "created":
        data = await _read_reviewed(storage, state, name)
        parts = await platform.upload_parts(state.upload_id, data)
        await advance("parts_done", parts=parts)
    if state.step == "parts_done":
        await platform.complete(state.upload_id, state.parts, state.media_uuid)
        await advance("completed")
    if state.step == "completed":
        await platform.wait_ready(state.media_uuid)
        await advance("ready")
    if state.step == "ready":
        await platform.attach(state.vault_folder, state.media_uuid)
        await advance("attached")
    if state.step == "attached" and state.post:
        post_uuid = await platform.create_post(state.media_uuid, state.post)
        await advance("posted", post_uuid=post_uuid)


async def _read_reviewed(storage: Storage, state: UploadState, name: str) -> bytes:
    """The reviewed crop (already stripped of metadata), wherever the library has it now."""
    for key in (
        library.key(state.creator, library.APPROVED, name, vault=state.vault),
        library.key(state.creator, library.REVIEW, name),
        library.key(state.creator, library.UPLOADED, name, vault=state.vault),
    ):
        try:
            return await storage.get(key)
        except KeyError:
            continue
    raise PlatformRejected(f"the reviewed image {name} is not in the library any more")


async def _file_under_uploaded(storage: Storage, state: UploadState, name: str) -> None:
    dst = library.key(state.creator, library.UPLOADED, name, vault=state.vault)
    for src in (
        library.key(state.creator, library.APPROVED, name, vault=state.vault),
        library.key(state.creator, library.REVIEW, name),
    ):
        try:
            await storage.move(src, dst)
            return
        except KeyError:
            continue


async def _fail(state: UploadState, store: UploadStore, reason: str) -> None:
    failed_step = state.step
    state.step, state.failed_step, state.error = "failed", failed_step, reason
    failed = new_event(
        "media.upload_failed",
        creator=state.creator,
        key=state.content_id,
        # Every failure is its own fact (an upload may fail, be retried and fail again).
        event_id=uuid.uuid4(),
        payload={"platform": state.platform, "reason": reason, "step": failed_step, "retryable": True},
    )
    await store.fail(state, failed)
    log.warning("upload failed", reason=reason, step=failed_step)
