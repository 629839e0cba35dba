"""upload: image.approved (or media.upload_retry_requested) -> the image in the platform's vault
folder -> media.uploaded, exactly once per image.

The upload is a small state machine persisted per content (table `uploads`):

    pending -> created (session + media uuid) -> parts_done -> completed -> ready -> attached
            [-> posting -> posted, when the approval asked for a feed post] -> done

Each step is committed before the next starts. A redelivery, a crash or a retry resumes from
the recorded step, so the platform never gets a second media for the same content. `done` is
committed in one transaction with the content row and the media.uploaded outbox event.

One run per content: a run holds the store's exclusive lock for the content (a PostgreSQL
advisory lock, released when the connection goes, so a crashed worker frees it); a second run
(another worker, a retry request, a redelivery) finds it busy and is retried later. Every step
change is compare-and-set from the step this run read: a run that lost its lock and finds the
step moved stops (LostRace) instead of repeating a platform call. While it waits on the
platform (429 pauses, parts, polling for ready) the run sends `heartbeat()` so the bus's short
ack_wait does not hand the message to another worker.

A feed post is created from the `posting` step, recorded before the request: a run that finds
`posting` (the create may have reached the platform without an answer) first looks for a post
of that media among the creator's recent posts and only creates one when there is none.

Platform errors that cannot succeed (auth after refresh, scope, validation) end the attempt
as `failed` (media.upload_failed, visible in status and review, with a retry action);
transient ones raise TransientError so the bus retries with backoff, and the last allowed
delivery records the failure instead of losing it to the dead letters silently."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
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
from vaultline.handlers.heartbeat import DEFAULT_EVERY_S, Heartbeat, keep_alive
from vaultline.handlers.ports import Storage

NAME = "upload"
log = structlog.get_logger("vaultline.upload")

STEPS = ("pending", "created", "parts_done", "completed", "ready", "attached", "posting", "posted", "done")


class PlatformRejected(Exception):
    """The platform refused for good (auth after refresh, missing scope, validation)."""


class LostRace(TransientError):
    """The step changed since this run read it: another run owns the upload; stop this one."""


class UploadBusy(TransientError):
    """Another run of this content's upload is in progress; look again later."""


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

    async def save(self, state: UploadState, expected_step: str) -> None:
        """Store the state only if the stored step is still `expected_step`; else LostRace."""

    def exclusive(self, content_id: uuid.UUID) -> AbstractAsyncContextManager[bool]:
        """Hold the one-run-per-content lock for the block; yields False if another run has it."""

    async def finish(self, state: UploadState, uploaded: Envelope, expected_step: str) -> None:
        """One transaction: step done, the content row, media.uploaded into the outbox.
        Compare-and-set from `expected_step` like save()."""

    async def fail(self, state: UploadState, failed: Envelope, expected_step: str) -> None:
        """One transaction: step failed, the content row, media.upload_failed into the outbox.
        Compare-and-set from `expected_step` like save()."""

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

    async def find_post(self, media_uuid: str) -> str | None:
        """The uuid of a recent post of the creator that carries this media, or None."""


async def handle(
    event: Envelope,
    *,
    store: UploadStore,
    storage: Storage,
    platform_for: Callable[[str], Any],
    vault_folder_for: Callable[[str, str], str],
    final_attempt: bool = False,
    heartbeat: Heartbeat | None = None,
    heartbeat_every: float = DEFAULT_EVERY_S,
) -> UploadState | None:
    p = event.payload
    cid = uuid.UUID(event.key)
    if isinstance(p, ImageApproved):
        platform = await platform_for(event.creator)
        post = p.post.model_dump(mode="json") if (p.post and p.vault == "feed") else None
        await store.start(
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
    elif not isinstance(p, MediaUploadRetryRequested):
        return None

    async with store.exclusive(cid) as mine:
        if not mine:
            if isinstance(p, MediaUploadRetryRequested):
                # A run in progress is not a failed upload: there is nothing to retry.
                log.warning("retry requested while the upload is running; nothing to retry")
                return None
            raise UploadBusy(f"another run of the upload of {cid} is in progress")
        state = await store.get(cid)  # read under the lock: what any earlier run left
        if isinstance(p, MediaUploadRetryRequested):
            if state is None or state.step != "failed":
                log.warning("retry requested but no failed upload to resume", step=state and state.step)
                return state  # nothing to retry (done, in progress, or never reached the uploader)
            state.step, state.error = state.failed_step or "pending", None
            await store.save(state, "failed")
            platform = await platform_for(event.creator)
        assert state is not None
        async with keep_alive(heartbeat, heartbeat_every):
            return await _run(event, state, store, storage, platform, final_attempt)


async def _run(
    event: Envelope, state: UploadState, store: UploadStore, storage: Storage, platform: Any, final_attempt: bool
) -> UploadState:
    cid = state.content_id
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
    except LostRace:
        log.warning("upload step changed under this run; it stops here", step=state.step)
        raise
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
    await store.finish(state, uploaded, state.step)
    state.step = "done"
    await _file_under_uploaded(storage, state, name)
    log.info("uploaded", media_uuid=state.media_uuid, vault_folder=state.vault_folder)
    return state


async def _run_steps(state: UploadState, store: UploadStore, platform: Any, storage: Storage, name: str) -> None:
    async def advance(step: str, **changes: Any) -> None:
        new = dataclasses.replace(state, step=step, **changes)
        await store.save(new, state.step)  # compare-and-set from the step this run holds
        state.__dict__.update(new.__dict__)

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
        await advance("posting")  # committed before the request: an ambiguous failure is known
    if state.step == "posting":
        assert state.post is not None
        post_uuid = await platform.find_post(state.media_uuid)
        if post_uuid is None:
            post_uuid = await platform.create_post(state.media_uuid, state.post)
        else:
            log.info("feed post already exists; not posting again", post_uuid=post_uuid)
        await advance("posted", post_uuid=post_uuid)


def _where_it_may_be(state: UploadState, name: str) -> tuple[str, str]:
    # In the order the library handler moves the file (3_review -> 4_approved/<vault>): looked
    # up in this order, a move that happens between two look-ups cannot slip past both.
    return (
        library.key(state.creator, library.REVIEW, name),
        library.key(state.creator, library.APPROVED, name, vault=state.vault),
    )


async def _read_reviewed(storage: Storage, state: UploadState, name: str) -> bytes:
    """The reviewed crop (already stripped of metadata), wherever the library has it now."""
    for key in (*_where_it_may_be(state, name), library.key(state.creator, library.UPLOADED, name, vault=state.vault)):
        try:
            return await storage.get(key)
        except KeyError:
            continue
    raise PlatformRejected(f"the reviewed image {name} is not in the library any more")


async def _file_under_uploaded(storage: Storage, state: UploadState, name: str) -> None:
    dst = library.key(state.creator, library.UPLOADED, name, vault=state.vault)
    for src in _where_it_may_be(state, name):
        try:
            await storage.move(src, dst)
            return
        except KeyError:
            continue


async def _fail(state: UploadState, store: UploadStore, reason: str) -> None:
    failed_step = state.step
    failed = new_event(
        "media.upload_failed",
        creator=state.creator,
        key=state.content_id,
        # Every failure is its own fact (an upload may fail, be retried and fail again).
        event_id=uuid.uuid4(),
        payload={"platform": state.platform, "reason": reason, "step": failed_step, "retryable": True},
    )
    state.failed_step, state.error = failed_step, reason
    await store.fail(state, failed, failed_step)
    state.step = "failed"
    log.warning("upload failed", reason=reason, step=failed_step)
