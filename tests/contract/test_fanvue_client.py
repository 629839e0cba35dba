"""FanvueClient against the test Fanvue server over real loopback sockets.

Time is injected (FakeTime): rate-limit waits and backoffs are recorded instead of slept, while
every request still goes through httpx to the server. The only real waiting is the client timeout
in the timeout test (0.3 s).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.fanvue_server import FanvueTestServer
from tests.waiting import wait_until
from vaultline.adapters.fanvue.client import (
    API_VERSION,
    MiB,
    FanvueClient,
    UploadedPart,
    parse_part_url,
    split_parts,
)
from vaultline.adapters.fanvue.errors import (
    ApiVersionError,
    AuthError,
    Conflict,
    MediaNotReady,
    MediaProcessingError,
    NotFound,
    OAuthError,
    OAuthStateMismatch,
    PartUploadError,
    RateLimited,
    ScopeError,
    ServerError,
    TransportError,
    ValidationError,
)
from vaultline.adapters.fanvue.oauth import DEFAULT_SCOPES, LoopbackReceiver, OAuthClient, login_interactive
from vaultline.adapters.fanvue.tokens import InMemoryTokenStore, StaticTokenProvider, TokenManager, TokenSet



class FakeTime:
    """Monotonic clock + wall clock + sleep that records the wait and advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall0 = 1_700_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Env:
    server: FanvueTestServer
    client: FanvueClient
    manager: TokenManager
    time: FakeTime
    grant: dict[str, Any]


@pytest.fixture
async def env(fanvue_server: FanvueTestServer) -> AsyncIterator[Env]:
    async with _env(fanvue_server) as e:
        yield e


class _env:
    """A client logged in as the test server's user (tokens in an InMemoryTokenStore, refresh via
    the server's real token endpoint)."""

    def __init__(self, server: FanvueTestServer, **client_kw: Any) -> None:
        self.server = server
        self.kw = client_kw

    async def __aenter__(self) -> Env:
        ft = FakeTime()
        grant = self.server.issue_tokens()
        store = InMemoryTokenStore()
        await store.save("elena", TokenSet.from_token_response(grant, now=time.time()))
        self.oauth = OAuthClient(self.server.client_id, self.server.client_secret, token_url=self.server.token_url)
        manager = TokenManager(store, self.oauth.refresh_tokens, "elena")
        kw = {"creator": "elena", "base_url": self.server.base_url, "clock": ft.clock, "wall_clock": ft.wall,
              "sleep": ft.sleep, "timeout": 5.0, **self.kw}
        self.client = FanvueClient(manager, **kw)
        return Env(self.server, self.client, manager, ft, grant)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.oauth.aclose()


def _api_requests(server: FanvueTestServer, route: str) -> list[Any]:
    return [r for r in server.requests if r.route == route]


# ----------------------------------------------------------------------------- basics


async def test_every_api_call_carries_version_and_bearer(env: Env) -> None:
    me = await env.client.whoami()
    assert me["handle"] == "elena"
    (req,) = _api_requests(env.server, "users.me")
    assert req.headers["x-fanvue-api-version"] == API_VERSION == "2025-06-26"
    assert req.headers["authorization"] == f"Bearer {env.grant['access_token']}"
    assert req.path == "/users/me"  # no /v1 prefix by default


async def test_path_prefix_is_configurable() -> None:
    with FanvueTestServer(path_prefix="/v1") as server:
        async with _env(server, path_prefix="v1") as e:
            assert (await e.client.whoami())["handle"] == "elena"
            assert server.requests[-1].path == "/v1/users/me"
        async with _env(server) as e:  # wrong prefix → typed 404, not a crash
            with pytest.raises(NotFound):
                await e.client.whoami()


# ----------------------------------------------------------------------------- upload


async def test_multipart_upload_of_12_mib_in_three_parts(env: Env) -> None:
    payload = os.urandom(12 * MiB)
    media_uuid = await env.client.upload_file(payload, "elena_0001.png", "image", part_size=5 * MiB)

    server = env.server
    assert server.count("media.create_upload") == 1
    assert server.count("media.part_url") == 3 and server.count("s3.put_part") == 3
    assert server.count("media.complete_upload") == 1
    # The parts list: 1..3 in order with S3's quoted ETags of 5 + 5 + 2 MiB slices.
    chunks = [payload[:5 * MiB], payload[5 * MiB:10 * MiB], payload[10 * MiB:]]
    assert server.completions == [[{"PartNumber": i + 1, "ETag": f'"{hashlib.md5(c).hexdigest()}"'}
                                   for i, c in enumerate(chunks)]]
    media = server.media[media_uuid]
    assert media["size"] == len(payload) and media["sha256"] == hashlib.sha256(payload).hexdigest()
    # Presigned S3 URL: no Fanvue auth or version header (nor an unsigned Content-Type).
    assert server.violations == []
    for req in _api_requests(server, "s3.put_part"):
        assert "authorization" not in req.headers
        assert not any(h.startswith("x-fanvue") for h in req.headers)
    assert (await env.client.wait_media_ready(media_uuid))["status"] == "ready"


def test_part_split_respects_s3_minimum() -> None:
    assert split_parts(12 * MiB, 5 * MiB) == [(1, 0, 5 * MiB), (2, 5 * MiB, 10 * MiB), (3, 10 * MiB, 12 * MiB)]
    assert split_parts(1 * MiB) == [(1, 0, MiB)]  # a single small part is fine (it is the last)
    with pytest.raises(ValueError):
        split_parts(12 * MiB, 4 * MiB)
    with pytest.raises(ValueError):
        split_parts(0)


@pytest.mark.parametrize("shape", ["text", "json_string", "json_object"])
async def test_part_url_in_every_response_shape(env: Env, shape: str) -> None:
    env.server.part_url_shape = shape
    session = await env.client.create_upload("x", "x.png", "image")
    url = await env.client.get_part_url(session.upload_id, 1)
    assert url.startswith(f"{env.server.base_url}/s3/parts/") and "X-Amz-Signature=" in url
    etag = await env.client.put_part(url, b"abc")
    assert etag == f'"{hashlib.md5(b"abc").hexdigest()}"'
    assert await env.client.complete_upload(session.upload_id, [UploadedPart(1, etag)]) == "processing"


def test_parse_part_url_variants() -> None:
    u = "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=1"
    assert parse_part_url(u + "\n") == u
    assert parse_part_url(f'"{u}"') == u
    assert parse_part_url(f'{{"signedUrl": "{u}"}}') == u
    assert parse_part_url("{}") is None and parse_part_url("nope") is None


async def test_expired_part_url_is_a_typed_error(env: Env) -> None:
    session = await env.client.create_upload("x", "x.png", "image")
    url = await env.client.get_part_url(session.upload_id, 1)
    env.server.expire_part_urls()
    with pytest.raises(PartUploadError) as ei:
        await env.client.put_part(url, b"abc")
    assert ei.value.status == 403
    # upload_part fetches a fresh URL just before its PUT, so it still succeeds.
    part = await env.client.upload_part(session.upload_id, 1, b"abc")
    assert part.part_number == 1 and part.etag.startswith('"')


async def test_complete_is_safe_to_repeat_when_media_uuid_is_known(env: Env) -> None:
    session = await env.client.create_upload("x", "x.png", "image")
    part = await env.client.upload_part(session.upload_id, 1, b"data")
    await env.client.complete_upload(session.upload_id, [part])
    # A resumed state machine completing again: the server refuses, the media shows it is done.
    with pytest.raises(ValidationError):
        await env.client.complete_upload(session.upload_id, [part])
    status = await env.client.complete_upload(session.upload_id, [(1, part.etag)], media_uuid=session.media_uuid)
    assert status in ("processing", "ready")


async def test_wait_ready_polls_until_ready(env: Env) -> None:
    env.server.processing_polls = 2
    media = await env.client.upload_file(b"img", "a.png")
    out = await env.client.wait_media_ready(media, timeout=30, poll=2)
    assert out["status"] == "ready"
    assert env.server.count("media.get") == 3 and env.time.sleeps == [2, 2]


async def test_wait_ready_error_status_is_typed(env: Env) -> None:
    env.server.processing_outcome = "error"
    media = await env.client.upload_file(b"img", "a.png")
    with pytest.raises(MediaProcessingError) as ei:
        await env.client.wait_media_ready(media, timeout=30, poll=2)
    assert ei.value.media_uuid == media and not ei.value.transient


async def test_wait_ready_is_bounded(env: Env) -> None:
    env.server.processing_outcome = "never"
    media = await env.client.upload_file(b"img", "a.png")
    with pytest.raises(MediaNotReady) as ei:
        await env.client.wait_media_ready(media, timeout=10, poll=3)
    assert ei.value.last_status == "processing" and ei.value.transient
    assert sum(env.time.sleeps) == pytest.approx(10)
    assert env.server.count("media.get") == 5  # t=0,3,6,9,10


# ----------------------------------------------------------------------------- folders, posts


async def test_ensure_folder_twice_then_attach(env: Env) -> None:
    name = "elena feed ✨"
    assert await env.client.ensure_vault_folder(name) == name
    assert await env.client.ensure_vault_folder(name) == name  # 409 → looked up by name
    assert env.server.count("vault.create") == 2 and env.server.count("vault.get") == 1
    # A name the GET route cannot address (a decoded %2F): 409, GET 404, found by listing.
    assert await env.client.ensure_vault_folder("a/b") == "a/b"
    assert await env.client.ensure_vault_folder("a/b") == "a/b"
    assert env.server.count("vault.list") == 1
    media = await env.client.upload_file(b"img", "a.png")
    await env.client.wait_media_ready(media)
    assert await env.client.attach_to_folder(name, media) == 1
    assert await env.client.attach_to_folder(name, [media]) == 0  # already there
    assert env.server.folders[name]["media"] == [media]
    with pytest.raises(NotFound):
        await env.client.attach_to_folder("no such folder", media)


async def test_list_folders_follows_pagination(env: Env) -> None:
    for i in range(20):
        await env.client.ensure_vault_folder(f"f{i:02d}")
    names = [f["name"] for f in await env.client.list_vault_folders()]
    assert sorted(names) == [f"f{i:02d}" for i in range(20)]


async def test_create_post_with_media_and_schedule(env: Env) -> None:
    media = await env.client.upload_file(b"img", "a.png")
    await env.client.wait_media_ready(media)
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    post = await env.client.create_post("hi", "subscribers", [media], publish_at=when, price_cents=999)
    assert post["audience"] == "subscribers" and post["price"] == 999
    assert env.server.posts[0]["publishAt"] == "2030-01-02T01:04:05Z"
    assert env.server.posts[0]["mediaUuids"] == [media]


async def test_create_post_is_never_repeated_after_500(env: Env) -> None:
    env.server.inject("500", endpoint="posts.create")
    with pytest.raises(ServerError):
        await env.client.create_post("hi", "subscribers")
    assert env.server.count("posts.create") == 1  # a retry could have double-posted


async def test_a_post_whose_answer_was_lost_is_found_among_recent_posts(fanvue_server: FanvueTestServer) -> None:
    async with _env(fanvue_server, timeout=0.3) as env:
        media = await env.client.upload_file(b"img", "a.png")
        other = await env.client.upload_file(b"img", "b.png")
        await env.client.wait_media_ready(media)
        await env.client.wait_media_ready(other)
        assert await env.client.find_post_with_media(media) is None
        await env.client.create_post("older", "subscribers", [other])
        # The request arrives and the post is created, but only after the client gave up waiting.
        env.server.inject("slow", delay=0.6, endpoint="posts.create")
        with pytest.raises(TransportError) as lost:
            await env.client.create_post("hi", "subscribers", [media])
        assert lost.value.ambiguous
        await wait_until(lambda: len(env.server.posts) == 2, timeout=5)
        found = await env.client.find_post_with_media(media)
        assert found is not None and found["uuid"] == env.server.posts[1]["uuid"] and found["text"] == "hi"
        assert env.server.count("posts.create") == 2  # never repeated by the client itself


# ----------------------------------------------------------------------------- retries and limits


async def test_429_retry_after_seconds_is_honoured(env: Env) -> None:
    env.server.inject("429", retry_after="7")
    assert (await env.client.whoami())["handle"] == "elena"
    assert env.server.count("users.me") == 2
    assert env.time.sleeps == [7.0]


async def test_429_retry_after_http_date(env: Env) -> None:
    when = email.utils.formatdate(env.time.wall() + 42, usegmt=True)
    env.server.inject("429", retry_after=when)
    await env.client.whoami()
    assert env.time.sleeps == [pytest.approx(42, abs=1)]


async def test_429_x_ratelimit_reset(env: Env) -> None:
    env.server.inject("429", retry_after=None, reset=str(int(env.time.wall()) + 12))
    await env.client.whoami()
    assert env.time.sleeps == [pytest.approx(12, abs=1)]


async def test_429_longer_than_allowed_raises_with_retry_after(fanvue_server: FanvueTestServer) -> None:
    async with _env(fanvue_server, max_retry_wait=60) as e:
        fanvue_server.inject("429", retry_after="3600")
        with pytest.raises(RateLimited) as ei:
            await e.client.whoami()
        assert ei.value.retry_after == 3600 and ei.value.transient
        assert e.time.sleeps == []


async def test_500_is_retried_with_backoff_then_succeeds(env: Env) -> None:
    env.server.inject("500", n=2)
    assert (await env.client.whoami())["handle"] == "elena"
    assert env.server.count("users.me") == 3
    assert len(env.time.sleeps) == 2 and 0.25 <= env.time.sleeps[0] <= 0.5 <= env.time.sleeps[1] <= 1.0


async def test_500_retries_are_bounded(env: Env) -> None:
    env.server.inject("500", n=10, status=503)
    with pytest.raises(ServerError) as ei:
        await env.client.whoami()
    assert ei.value.status == 503 and env.server.count("users.me") == 4  # max_attempts


async def test_timeout_is_retried(fanvue_server: FanvueTestServer) -> None:
    async with _env(fanvue_server, timeout=0.3) as e:
        fanvue_server.inject("slow", delay=5.0, endpoint="users.me")
        assert (await e.client.whoami())["handle"] == "elena"
        assert fanvue_server.count("users.me") == 2 and len(e.time.sleeps) == 1


async def test_connection_refused_is_a_typed_transport_error() -> None:
    with FanvueTestServer() as gone:
        port = gone.port  # nothing listens there once the server stopped
    ft = FakeTime()
    async with FanvueClient(StaticTokenProvider("t"), base_url=f"http://127.0.0.1:{port}",
                            clock=ft.clock, sleep=ft.sleep, max_attempts=3) as c:
        with pytest.raises(TransportError) as ei:
            await c.whoami()
    assert not ei.value.ambiguous and len(ft.sleeps) == 2


async def test_401_refreshes_once_then_succeeds(env: Env) -> None:
    env.server.inject("401")
    assert (await env.client.whoami())["handle"] == "elena"
    assert env.server.count("oauth.token:refresh_token") == 1
    first, second = _api_requests(env.server, "users.me")
    assert first.headers["authorization"] == f"Bearer {env.grant['access_token']}"
    assert second.headers["authorization"] != first.headers["authorization"]
    assert not env.server.refresh_token_valid(env.grant["refresh_token"])  # rotated


async def test_401_after_refresh_is_auth_error(env: Env) -> None:
    env.server.inject("401", n=2)
    with pytest.raises(AuthError):
        await env.client.whoami()
    assert env.server.count("oauth.token:refresh_token") == 1 and env.server.count("users.me") == 2


async def test_400_maps_to_validation_error_with_fanvue_message(env: Env) -> None:
    with pytest.raises(ValidationError) as ei:
        await env.client.create_upload("", "x.png", "image")
    assert ei.value.status == 400
    assert ei.value.errors == ["name must be a string of 1-255 characters"]
    assert "name must be a string" in str(ei.value)


@pytest.mark.parametrize("status,body,exc", [
    (403, {"message": "Insufficient scope: write:media"}, ScopeError),
    (404, {"message": "Media not found"}, NotFound),
    (409, {"message": "exists"}, Conflict),
    (410, {"error": "API version no longer supported", "message": "sunset", "nextVersion": "2027-01-01"},
     ApiVersionError),
    (422, {"errors": [{"message": "bad field"}]}, ValidationError),
])
async def test_error_mapping(env: Env, status: int, body: dict, exc: type) -> None:
    env.server.inject("error", status=status, body=body)
    with pytest.raises(exc) as ei:
        await env.client.get_media("00000000-0000-0000-0000-000000000000")
    assert ei.value.status == status
    if exc is ApiVersionError:
        assert ei.value.next_version == "2027-01-01"
    if status == 422:
        assert ei.value.errors == ["bad field"]


async def test_version_header_is_checked_by_the_server(fanvue_server: FanvueTestServer) -> None:
    async with _env(fanvue_server, api_version="2024-01-01") as e:
        with pytest.raises(ValidationError, match="not supported"):
            await e.client.whoami()


async def test_rate_bucket_limits_bursts(fanvue_server: FanvueTestServer) -> None:
    async with _env(fanvue_server, rate_limit=5, rate_period=60) as e:
        for _ in range(8):
            await e.client.whoami()
        assert fanvue_server.count("users.me") == 8
        # 5 immediately, then one every 12 s (5 per 60 s).
        assert e.time.sleeps == [pytest.approx(12)] * 3


# ----------------------------------------------------------------------------- OAuth


async def test_interactive_login_with_pkce(fanvue_server: FanvueTestServer) -> None:
    server = fanvue_server
    seen: list[str] = []

    async def browser(url: str) -> None:
        # Plays the user's browser: the authorize page redirects to our loopback receiver.
        seen.append(url)
        async with httpx.AsyncClient(follow_redirects=True) as b:
            r = await b.get(url)
            assert r.status_code == 200 and "received" in r.text

    async with OAuthClient(server.client_id, server.client_secret, token_url=server.token_url,
                           authorize_url=server.authorize_url) as oauth:
        tokens = await login_interactive(oauth, on_url=browser, port=0, timeout=10)
    q = server.last_authorize
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["redirect_uri"].startswith("http://127.0.0.1:") and q["redirect_uri"].endswith("/callback")
    assert set(q["scope"].split()) == set(DEFAULT_SCOPES) >= {"openid", "offline_access", "offline"}
    assert tokens.refresh_token and tokens.expires_at and tokens.expires_at > time.time()
    assert tokens.access_token in server.access_tokens


async def test_callback_with_wrong_state_is_refused() -> None:
    async with LoopbackReceiver(0) as rx:
        async with httpx.AsyncClient() as b:
            assert (await b.get(f"http://127.0.0.1:{rx.port}/favicon.ico")).status_code == 404
            await b.get(rx.redirect_uri, params={"code": "c", "state": "forged"})
        with pytest.raises(OAuthStateMismatch):
            await rx.wait_for_code("expected", timeout=5)


async def test_callback_error_is_reported() -> None:
    async with LoopbackReceiver(0) as rx:
        async with httpx.AsyncClient() as b:
            await b.get(rx.redirect_uri, params={"error": "access_denied", "state": "s"})
        with pytest.raises(OAuthError, match="access_denied"):
            await rx.wait_for_code("s", timeout=5)


# ----------------------------------------------------------------------------- CLI


def test_cli_login_and_whoami(fanvue_cli_env: FanvueTestServer, tmp_path: Path) -> None:
    from vaultline.entrypoints.fanvue_cli import fanvue_app

    fanvue_server = fanvue_cli_env  # migrated database, VAULTLINE_* pointing at the test server
    grant = fanvue_server.issue_tokens()
    runner = CliRunner()
    r = runner.invoke(fanvue_app, ["login", "--creator", "elena", "--access-token", grant["access_token"],
                                   "--refresh-token", grant["refresh_token"]])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    fanvue_server.expire_access_token(grant["access_token"])  # whoami must refresh through the store
    r = runner.invoke(fanvue_app, ["whoami", "--creator", "elena"])
    assert r.exit_code == 0, r.output
    assert "@elena" in r.output and fanvue_server.count("oauth.token:refresh_token") == 1
    r = runner.invoke(fanvue_app, ["whoami", "--creator", "nobody"])
    assert r.exit_code == 1 and "login" in r.output
