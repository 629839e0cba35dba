"""The upload state machine with fakes: resume after a crash at every step, never a second
media, permanent vs transient platform errors, the retry action, feed posts."""

import uuid

import pytest

from tests.fakes import FakeUploadStore
from vaultline.adapters.platforms import LocalPlatform
from vaultline.adapters.storage import InMemoryStorage
from vaultline.domain.retry import TransientError
from vaultline.events import derived_id, new_event
from vaultline.handlers import upload
from vaultline.handlers.upload import PlatformRejected

STEPS = ["create_session", "upload_parts", "complete", "wait_ready", "attach"]


class Crash(Exception):
    """The process dies here."""


class FakePlatform:
    """Counts what reached the 'platform'; can die after doing a step, or refuse."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sessions: list[str] = []
        self.completed: set[str] = set()
        self.attached: dict[str, set[str]] = {}
        self.posts: list[dict] = []
        self.crash_after: str | None = None
        self.refuse: str | None = None
        self.flaky: str | None = None

    async def _step(self, name: str) -> None:
        self.calls.append(name)
        if self.refuse == name:
            raise PlatformRejected("403 missing scope write:media")
        if self.flaky == name:
            raise ConnectionError("503 from the platform")

    def _maybe_crash(self, name: str) -> None:
        if self.crash_after == name:
            self.crash_after = None
            raise Crash(name)

    async def create_session(self, content_id, filename):
        await self._step("create_session")
        media = f"m{len(self.sessions) + 1}"
        self.sessions.append(media)
        self._maybe_crash("create_session")
        return media, f"u-{media}"

    async def upload_parts(self, upload_id, data):
        await self._step("upload_parts")
        self._maybe_crash("upload_parts")
        return [{"part_number": 1, "etag": '"e1"'}]

    async def complete(self, upload_id, parts, media_uuid):
        await self._step("complete")
        self.completed.add(media_uuid)
        self._maybe_crash("complete")

    async def wait_ready(self, media_uuid):
        await self._step("wait_ready")
        self._maybe_crash("wait_ready")

    async def attach(self, folder, media_uuid):
        await self._step("attach")
        self.attached.setdefault(folder, set()).add(media_uuid)
        self._maybe_crash("attach")

    async def create_post(self, media_uuid, post):
        await self._step("create_post")
        self.posts.append(post | {"media": media_uuid})
        if self.crash_after == "create_post":  # the post exists; the answer never arrives
            self.crash_after = None
            raise ConnectionError("connection reset while reading the response")
        return f"post-{len(self.posts)}"

    async def find_post(self, media_uuid):
        await self._step("find_post")
        return next((f"post-{i + 1}" for i, p in enumerate(self.posts) if p["media"] == media_uuid), None)


CID = uuid.uuid4()
NAME = f"ComfyUI_00001_--{CID}.png"


def approved(vault="ppv", **extra):
    payload = {"vault": vault, "price_cents": 1299 if vault == "ppv" else None, **extra}
    return new_event("image.approved", creator="elena", key=CID, payload=payload)


@pytest.fixture
def world():
    store, storage = FakeUploadStore(), InMemoryStorage()
    store.review[CID] = (f"elena/3_review/{NAME}", "ComfyUI_00001_.png")
    return store, storage


async def run(event, store, storage, platform, **kw):
    async def platform_for(creator):
        return platform

    return await upload.handle(
        event, store=store, storage=storage, platform_for=platform_for,
        vault_folder_for=lambda c, v: f"{c}-{v}", **kw,
    )  # fmt: skip


async def in_review(world):
    """The world with the image's file in the review folder."""
    store, storage = world
    await storage.put(f"elena/3_review/{NAME}", b"png")
    return store, storage


async def run_dies(event, store, storage, platform) -> None:
    """A run that ends in TransientError: the bus would deliver the event again."""
    with pytest.raises(TransientError):
        await run(event, store, storage, platform)


async def test_happy_path_files_the_image_and_emits_media_uploaded(world):
    store, storage = world
    await storage.put(f"elena/4_approved/ppv/{NAME}", b"stripped-png")
    platform, event = FakePlatform(), approved()
    state = await run(event, store, storage, platform)
    assert state.step == "done" and state.media_uuid == "m1"
    assert platform.calls == STEPS
    assert platform.attached == {"elena-ppv": {"m1"}}
    (uploaded,) = store.outbox
    assert uploaded.type == "media.uploaded" and uploaded.event_id == derived_id(event.event_id, "media.uploaded")
    assert uploaded.payload.vault_folder == "elena-ppv" and uploaded.payload.media_uuid == "m1"
    assert await storage.get(f"elena/5_uploaded/ppv/{NAME}") == b"stripped-png"
    assert not await storage.exists(f"elena/4_approved/ppv/{NAME}")


@pytest.mark.parametrize("step", STEPS)
async def test_crash_after_any_platform_step_resumes_without_a_second_media(world, step):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    platform.crash_after = step
    await run_dies(event, store, storage, platform)  # dies: the bus redelivers
    state = await run(event, store, storage, platform)
    assert state.step == "done"
    assert len(platform.completed) == 1 and sum(len(v) for v in platform.attached.values()) == 1
    # Only a crash inside create_session (before its answer was recorded) can orphan a session,
    # and that orphan is never completed, so it never becomes a platform media.
    assert len(platform.sessions) == (2 if step == "create_session" else 1)
    assert [e.type for e in store.outbox] == ["media.uploaded"]


@pytest.mark.parametrize("committed_step", ["created", "parts_done", "completed", "ready", "attached"])
async def test_crash_right_after_a_step_is_committed_repeats_nothing(world, committed_step):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    real_save = store.save

    async def save_then_die(state, expected_step):
        await real_save(state, expected_step)
        if state.step == committed_step:
            raise Crash(committed_step)

    store.save = save_then_die
    await run_dies(event, store, storage, platform)
    store.save = real_save
    await run(event, store, storage, platform)
    assert platform.calls == STEPS  # every step ran exactly once
    assert [e.type for e in store.outbox] == ["media.uploaded"]


async def test_redelivery_after_done_does_nothing(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    await run(event, store, storage, platform)
    await run(event, store, storage, platform)
    assert platform.calls == STEPS and len(store.outbox) == 1


async def test_permanent_refusal_fails_visibly_and_retry_resumes_at_that_step(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    platform.refuse = "attach"
    state = await run(event, store, storage, platform)
    assert state.step == "failed" and state.failed_step == "ready"
    failed = store.outbox[-1]
    assert failed.type == "media.upload_failed" and "scope" in failed.payload.reason
    # Delivered again (e.g. a replay): still failed, nothing new at the platform.
    calls = list(platform.calls)
    await run(event, store, storage, platform)
    assert platform.calls == calls
    # The operator fixes the scope and presses retry.
    platform.refuse = None
    retry = new_event("media.upload_retry_requested", creator="elena", key=CID, payload={"reviewer": "op"})
    state = await run(retry, store, storage, platform)
    assert state.step == "done" and platform.sessions == ["m1"]
    assert platform.calls[len(calls) :] == ["attach"]
    assert store.outbox[-1].event_id == derived_id(event.event_id, "media.uploaded")


async def test_transient_errors_go_back_to_the_bus_until_the_last_attempt(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    platform.flaky = "complete"
    await run_dies(event, store, storage, platform)
    state = await run(event, store, storage, platform, final_attempt=True)
    assert state.step == "failed" and "gave up" in store.outbox[-1].payload.reason


async def test_a_feed_approval_can_ask_for_a_post(world):
    store, storage = await in_review(world)
    platform = FakePlatform()
    post = {"audience": "subscribers", "text": "new set", "publish_at": "2026-12-01T10:00:00+00:00"}
    await run(approved("feed", post=post, description="new set"), store, storage, platform)
    assert platform.calls[-1] == "create_post"
    assert platform.posts[0]["text"] == "new set" and platform.posts[0]["media"] == "m1"


FEED_POST = {"audience": "subscribers", "text": "new set"}


async def test_a_post_whose_answer_was_lost_is_found_not_posted_twice(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved("feed", post=FEED_POST)
    platform.crash_after = "create_post"
    await run_dies(event, store, storage, platform)
    assert store.states[CID].step == "posting"  # recorded before the request
    state = await run(event, store, storage, platform)
    assert state.step == "done" and state.post_uuid == "post-1"
    assert len(platform.posts) == 1
    assert platform.calls[-2:] == ["create_post", "find_post"]


async def test_a_post_that_never_reached_the_platform_is_created_on_resume(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved("feed", post=FEED_POST)
    platform.flaky = "create_post"
    await run_dies(event, store, storage, platform)
    platform.flaky = None
    state = await run(event, store, storage, platform)
    assert state.step == "done" and len(platform.posts) == 1


async def test_a_second_run_while_one_holds_the_upload_touches_nothing(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    async with store.exclusive(CID):  # another worker is running this upload
        with pytest.raises(upload.UploadBusy):
            await run(event, store, storage, platform)
    assert platform.calls == []
    state = await run(event, store, storage, platform)
    assert state.step == "done" and platform.sessions == ["m1"]


async def test_a_retry_request_while_the_upload_runs_changes_nothing(world):
    store, storage = await in_review(world)
    platform = FakePlatform()
    retry = new_event("media.upload_retry_requested", creator="elena", key=CID, payload={})
    async with store.exclusive(CID):  # the approval's run is on the platform right now
        assert await run(retry, store, storage, platform) is None  # acked: nothing failed to retry
    assert platform.calls == [] and store.outbox == []


async def test_a_run_whose_step_moved_under_it_stops_without_repeating_a_platform_call(world):
    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    real = platform.upload_parts

    async def parts_while_another_run_advances(upload_id, data):
        # Another run (that took over after this one lost its lock) moved the step on.
        store.states[CID] = store._copy(store.states[CID], step="completed")
        return await real(upload_id, data)

    platform.upload_parts = parts_while_another_run_advances
    with pytest.raises(upload.LostRace):
        await run(event, store, storage, platform, final_attempt=True)
    assert platform.calls == ["create_session", "upload_parts"]  # it did not go on to complete
    assert store.states[CID].step == "completed" and store.outbox == []  # not failed either


async def test_the_run_sends_heartbeats_while_it_waits_on_the_platform(world):
    import asyncio

    store, storage = await in_review(world)
    platform, event = FakePlatform(), approved()
    beats = []
    real = platform.wait_ready

    async def slow_ready(media_uuid):
        while len(beats) < 3:  # media still processing
            await asyncio.sleep(0.005)
        await real(media_uuid)

    async def heartbeat():
        beats.append(1)

    platform.wait_ready = slow_ready
    state = await asyncio.wait_for(
        run(event, store, storage, platform, heartbeat=heartbeat, heartbeat_every=0.01), timeout=10
    )
    assert state.step == "done" and len(beats) >= 3


class MovedDuringLookups(InMemoryStorage):
    """The library handler files the image (3_review -> 4_approved/ppv) right after the upload's
    first look-up or move attempt, whichever it is: the worst moment for the upload."""

    def __init__(self) -> None:
        super().__init__()
        self.moved = False

    async def _library_moves(self) -> None:
        if not self.moved:
            self.moved = True
            await InMemoryStorage.move(self, f"elena/3_review/{NAME}", f"elena/4_approved/ppv/{NAME}")

    async def get(self, key: str) -> bytes:
        try:
            return await super().get(key)
        finally:
            await self._library_moves()


async def test_a_library_move_between_look_ups_never_loses_the_image():
    store, storage = FakeUploadStore(), MovedDuringLookups()
    store.review[CID] = (f"elena/3_review/{NAME}", "ComfyUI_00001_.png")
    await storage.put(f"elena/3_review/{NAME}", b"stripped-png")
    state = await run(approved(), store, storage, FakePlatform())
    assert state.step == "done" and storage.moved
    assert await storage.get(f"elena/5_uploaded/ppv/{NAME}") == b"stripped-png"
    assert await storage.list("elena/4_approved/") == [] and await storage.list("elena/3_review/") == []


async def test_content_not_projected_yet_is_retried_later():
    store = FakeUploadStore()
    with pytest.raises(TransientError):
        await run(approved(), store, InMemoryStorage(), FakePlatform())


async def test_local_platform_runs_the_same_steps(world):
    store, storage = await in_review(world)
    state = await run(approved("archive"), store, storage, LocalPlatform())
    assert state.step == "done" and uuid.UUID(state.media_uuid)
    assert await storage.get(f"elena/5_uploaded/archive/{NAME}") == b"png"
    assert store.outbox[0].payload.platform == "local"


async def test_a_retry_with_nothing_failed_changes_nothing(world):
    store, storage = world
    retry = new_event("media.upload_retry_requested", creator="elena", key=CID, payload={})
    assert await run(retry, store, storage, FakePlatform()) is None
    assert store.states == {} and store.outbox == []
