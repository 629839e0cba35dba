"""Async Fanvue API client (httpx) for what vaultline needs: identity, multipart media upload into
the vault, vault folders, posts. See /work/shared/research/fanvue-api.md.

Behaviour worth knowing:
- Every API call carries `X-Fanvue-API-Version` and `Authorization: Bearer` from a TokenProvider.
  A 401 refreshes the token once (single-flight in TokenManager) and retries once.
- A client-side token bucket per creator (200 requests / 60 s by default) keeps bursts under
  Fanvue's limit; a 429 pauses that bucket for `Retry-After` (seconds or HTTP date) or until
  `X-RateLimit-Reset`, so concurrent callers sharing the bucket wait too.
- 5xx, timeouts and connection errors are retried by the FANVUE policy (adapters/retry_policies.py:
  tenacity, capped exponential backoff with jitter, bounded attempts), but only where repeating is harmless: `create_post` is never repeated once the
  request may have reached Fanvue (Fanvue documents no idempotency keys; a retry could double-post).
- Presigned part URLs are plain S3: they get the bytes and nothing else (a separate httpx client
  with no Fanvue headers; an Authorization header would make S3 reject the signature).
- Each upload step is callable alone so a resumable state machine can persist progress between them.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from vaultline.adapters.fanvue import API_VERSION, DEFAULT_BASE_URL
from vaultline.adapters.fanvue.errors import (
    ApiVersionError,
    AuthError,
    Conflict,
    FanvueError,
    MediaNotReady,
    MediaProcessingError,
    NotFound,
    PartUploadError,
    RateLimited,
    ScopeError,
    ServerError,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)
from vaultline.adapters.fanvue.tokens import TokenProvider
from vaultline.adapters.retry_policies import FANVUE, RetryPolicy, backoff

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last must be at least 5 MiB
MAX_PARTS = 10_000
MEDIA_TYPES = ("image", "video", "audio", "document")
AUDIENCES = ("subscribers", "followers-and-subscribers")
# The get-media description mentions "FINALISED" although the enum is created|processing|ready|error.
_READY = {"ready", "finalised", "finalized"}
_FAILED = {"error", "failed"}

Sleep = Callable[[float], Awaitable[Any]]


# ----------------------------------------------------------------------------- rate limiting


class TokenBucket:
    """Client-side bucket: `capacity` requests, refilled continuously over `period` seconds.

    Continuous refill is stricter than Fanvue's "refills fully every 60 s", so staying under it
    keeps us under theirs. `clock` is monotonic seconds and `sleep` awaits; both injectable."""

    def __init__(self, capacity: int = 200, period: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if capacity < 1 or period <= 0:
            raise ValueError("capacity must be >= 1 and period > 0")
        self.capacity = float(capacity)
        self.rate = capacity / period
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(capacity)
        self._updated = clock()
        self._paused_until = float("-inf")

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> float:
        """Take one token, waiting as needed. Returns the seconds waited."""
        waited = 0.0
        while True:
            now = self._clock()
            self._refill(now)
            if now < self._paused_until:
                wait = self._paused_until - now
            elif self._tokens >= 1.0:
                self._tokens -= 1.0
                return waited
            else:
                wait = (1.0 - self._tokens) / self.rate
            await self._sleep(wait)
            waited += wait

    def pause_for(self, seconds: float) -> None:
        """Nobody gets a token for `seconds` (after a 429 or a server-reported empty bucket)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe_remaining(self, remaining: float) -> None:
        """The server says only `remaining` requests are left: never believe we have more."""
        self._refill(self._clock())
        self._tokens = min(self._tokens, max(0.0, remaining))

    @property
    def available(self) -> float:
        self._refill(self._clock())
        return self._tokens


_shared_buckets: dict[str, TokenBucket] = {}


def shared_bucket(creator: str, capacity: int = 200, period: float = 60.0) -> TokenBucket:
    """One real-time bucket per creator for the whole process: pass it to every FanvueClient of
    that creator so they share Fanvue's per-user budget."""
    b = _shared_buckets.get(creator)
    if b is None:
        b = _shared_buckets[creator] = TokenBucket(capacity, period)
    return b


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as delta seconds or an HTTP date (RFC 9110). `now` is Unix seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def parse_rate_limit_reset(value: str | None, now: float) -> float | None:
    """X-RateLimit-Reset is documented as Unix seconds; a small number is read as a delta."""
    if not value:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    return max(0.0, reset - now) if reset > 1e9 else max(0.0, reset)


# ----------------------------------------------------------------------------- values


class UploadSession(NamedTuple):
    media_uuid: str
    upload_id: str


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str  # exactly as S3 returned it (quoted)

    def as_json(self) -> dict[str, Any]:
        return {"PartNumber": self.part_number, "ETag": self.etag}


PartLike = UploadedPart | tuple[int, str] | Mapping[str, Any]


def split_parts(size: int, part_size: int = MIN_PART_SIZE) -> list[tuple[int, int, int]]:
    """(part_number, start, end) slices; every part but the last is exactly part_size."""
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"part_size must be >= {MIN_PART_SIZE} bytes (S3 minimum)")
    if size <= 0:
        raise ValueError("nothing to upload")
    n = -(-size // part_size)
    if n > MAX_PARTS:
        raise ValueError(f"{n} parts exceed S3's {MAX_PARTS}; use a larger part_size")
    return [(i + 1, i * part_size, min(size, (i + 1) * part_size)) for i in range(n)]


def error_message(body: Any, fallback: str = "") -> tuple[str, list[str]]:
    """Fanvue has no single error envelope: read errors[], then message, then error."""
    errors: list[str] = []
    if isinstance(body, dict):
        raw = body.get("errors")
        if isinstance(raw, list):
            for e in raw:
                if isinstance(e, str):
                    errors.append(e)
                elif isinstance(e, dict):
                    errors.append(str(e.get("message") or e.get("error") or json.dumps(e)))
                else:
                    errors.append(str(e))
        elif isinstance(raw, str):
            errors.append(raw)
        if errors:
            return "; ".join(errors), errors
        for key in ("message", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key], errors
    elif isinstance(body, str) and body:
        return body, errors
    return fallback, errors


# ----------------------------------------------------------------------------- client


_SAFE_TO_RETRY = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # never reached the server


@dataclass
class _CallState:
    """What one API call remembers across its transport attempts."""

    refreshed: bool = False
    rate_limit_waits: int = 0


class FanvueClient:
    """`async with FanvueClient(tokens, creator="elena") as fv: await fv.whoami()`."""

    def __init__(
        self,
        tokens: TokenProvider,
        *,
        creator: str = "default",
        base_url: str = DEFAULT_BASE_URL,
        path_prefix: str = "",
        api_version: str = API_VERSION,
        timeout: float = 30.0,
        part_timeout: float = 120.0,
        retry_policy: RetryPolicy = FANVUE,
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        max_rate_limit_waits: int = 5,
        max_retry_wait: float = 300.0,
        rate_limiter: TokenBucket | None = None,
        rate_limit: int = 200,
        rate_period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._tokens = tokens
        self.creator = creator
        self.base_url = base_url.rstrip("/")
        prefix = (path_prefix or "").strip().strip("/")
        self.path_prefix = f"/{prefix}" if prefix else ""
        self.api_version = api_version
        # The service's policy, optionally tightened per client (tests, one-shot CLI calls).
        self._policy = replace(
            retry_policy,
            max_attempts=max(1, max_attempts if max_attempts is not None else retry_policy.max_attempts),
            backoff_base=backoff_base if backoff_base is not None else retry_policy.backoff_base,
            backoff_cap=backoff_cap if backoff_cap is not None else retry_policy.backoff_cap,
        )
        self._max_rl_waits = max_rate_limit_waits
        self._max_retry_wait = max_retry_wait
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.bucket = rate_limiter or TokenBucket(rate_limit, rate_period, clock=clock, sleep=sleep)
        # No default headers on either client: Fanvue headers are set per API request so they can
        # never leak to the presigned S3 URLs, which use their own client.
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._s3 = httpx.AsyncClient(timeout=part_timeout, transport=transport)
        self._deprecation_logged = False

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._s3.aclose()

    async def __aenter__(self) -> "FanvueClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ plumbing

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.path_prefix}{path}"

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      params: Mapping[str, Any] | None = None, idempotent: bool = True) -> httpx.Response:
        """One API call with auth, versioning, rate limiting, retries and error mapping.
        Returns the 2xx response; raises a FanvueError subclass otherwise."""
        url = self.url(path)
        state = _CallState()

        def repeatable(exc: BaseException) -> bool:
            # A request that never reached Fanvue can always be repeated; one that may have
            # (read timeout, 5xx) only when repeating it is harmless.
            if isinstance(exc, TransportError):
                return idempotent or not exc.ambiguous
            return isinstance(exc, ServerError) and idempotent

        retrying = self._policy.retrying(retry_if=repeatable, sleep=self._sleep, rng=self._rng)
        return await retrying(self._send, method, url, json_body, params, state)

    async def _send(self, method: str, url: str, json_body: Any, params: Mapping[str, Any] | None,
                    state: "_CallState") -> httpx.Response:
        """One transport attempt: waits for the bucket (also across 429s) and refreshes the token
        once per call after a 401. Raises TransportError/ServerError for the retry policy."""
        while True:
            await self.bucket.acquire()
            token = await self._tokens.access_token()
            headers = {
                "Authorization": f"Bearer {token}",
                "X-Fanvue-API-Version": self.api_version,
                "Accept": "application/json",
            }
            try:
                resp = await self._http.request(method, url, json=json_body, params=params, headers=headers)
            except httpx.TransportError as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}", ambiguous=not isinstance(exc, _SAFE_TO_RETRY),
                                     method=method, url=url) from exc
            self._observe(resp)
            status = resp.status_code
            if status == 401 and not state.refreshed:
                state.refreshed = True  # one refresh per call: a second 401 is a real auth failure
                await self._tokens.refresh_after_401(token)
                continue
            if status == 429:
                wait = self._rate_limit_wait(resp)
                state.rate_limit_waits += 1
                if state.rate_limit_waits > self._max_rl_waits or (wait is not None and wait > self._max_retry_wait):
                    raise self._error(resp, method, url)
                self.bucket.pause_for(wait if wait is not None else
                                      backoff(state.rate_limit_waits, self._policy.backoff_base,
                                              self._policy.backoff_cap, self._rng))
                continue  # bucket.acquire() does the waiting, for every caller sharing it
            if status >= 400:
                raise self._error(resp, method, url)
            return resp

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = await self.request(method, path, **kw)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise UnexpectedResponse(f"non-JSON body: {resp.text[:200]!r}", status=resp.status_code,
                                     method=method, url=str(resp.request.url)) from None

    def _observe(self, resp: httpx.Response) -> None:
        h = resp.headers
        remaining = h.get("X-RateLimit-Remaining")
        if remaining is not None and resp.status_code != 429:
            try:
                rem = float(remaining)
            except ValueError:
                rem = None
            if rem is not None:
                self.bucket.observe_remaining(rem)
                if rem <= 0:
                    wait = parse_rate_limit_reset(h.get("X-RateLimit-Reset"), self._wall())
                    if wait:
                        self.bucket.pause_for(wait)
        if "Deprecation" in h and not self._deprecation_logged:
            self._deprecation_logged = True
            log.warning("Fanvue API version %s is deprecated (Sunset: %s, next: %s)", self.api_version,
                        h.get("Sunset"), h.get("X-Fanvue-API-Next-Version"))

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        now = self._wall()
        wait = parse_retry_after(resp.headers.get("Retry-After"), now)
        if wait is None:
            wait = parse_rate_limit_reset(resp.headers.get("X-RateLimit-Reset"), now)
        return wait

    def _error(self, resp: httpx.Response, method: str, url: str) -> FanvueError:
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        status = resp.status_code
        msg, errors = error_message(body, fallback=resp.reason_phrase or f"HTTP {status}")
        kw: dict[str, Any] = {"status": status, "body": body, "method": method, "url": url}
        if status in (400, 422):
            return ValidationError(msg, errors=errors, **kw)
        if status == 401:
            return AuthError(f"{msg} (still 401 after a token refresh)", **kw)
        if status == 403:
            return ScopeError(msg, **kw)
        if status == 404:
            return NotFound(msg, **kw)
        if status == 409:
            return Conflict(msg, **kw)
        if status == 410:
            nxt = body.get("nextVersion") if isinstance(body, dict) else None
            return ApiVersionError(msg, next_version=nxt, **kw)
        if status == 429:
            return RateLimited(msg, retry_after=self._rate_limit_wait(resp), **kw)
        if status >= 500:
            return ServerError(msg, **kw)
        return FanvueError(msg, **kw)

    # ------------------------------------------------------------------ identity

    async def whoami(self) -> dict[str, Any]:
        """GET /users/me: {uuid, handle, displayName, isCreator, ...}."""
        body = await self._json("GET", "/users/me")
        if not isinstance(body, dict):
            raise UnexpectedResponse("GET /users/me did not return an object")
        return body

    # ------------------------------------------------------------------ upload steps

    async def create_upload(self, name: str, filename: str, media_type: str = "image") -> UploadSession:
        """Step 1: POST /media/uploads → (media_uuid, upload_id). Repeating it only leaves an
        abandoned `created` media item, so it is retried like a read."""
        if media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type must be one of {MEDIA_TYPES}")
        # Only the documented fields: sizeBytes/partSize are third-party lore (§9.3) and unknown
        # fields may fail validation.
        body = await self._json("POST", "/media/uploads",
                                json_body={"name": name[:255], "filename": filename[:255], "mediaType": media_type})
        media = _first(body, "mediaUuid", "media_uuid", "uuid")
        upload = _first(body, "uploadId", "upload_id")
        if not media or not upload:
            raise UnexpectedResponse(f"upload session without mediaUuid/uploadId: {body!r}")
        return UploadSession(str(media), str(upload))

    async def get_part_url(self, upload_id: str, part_number: int) -> str:
        """Step 2: a presigned URL for one part (1-based). The body may be plain text, a JSON
        string or a JSON object with url/signedUrl (§9.2: sources disagree), all accepted."""
        if part_number < 1 or part_number > MAX_PARTS:
            raise ValueError("part_number must be in 1..10000")
        resp = await self.request("GET", f"/media/uploads/{quote(upload_id, safe='')}/parts/{part_number}/url")
        url = parse_part_url(resp.text)
        if url is None:
            raise UnexpectedResponse(f"no part URL in response: {resp.text[:200]!r}",
                                     status=resp.status_code, url=str(resp.request.url))
        return url

    async def put_part(self, url: str, data: bytes) -> str:
        """Step 3: PUT the bytes to the presigned S3 URL (no Fanvue headers, no Content-Type since
        it is not among the signed headers). Returns the ETag exactly as S3 sent it."""
        def repeatable(exc: BaseException) -> bool:
            # PUT of the same bytes to the same part is idempotent: network failures, 5xx and
            # 429 are repeated; other S3 refusals (403 expired URL, 404) are not.
            return isinstance(exc, TransportError) or (
                isinstance(exc, PartUploadError) and exc.status is not None
                and (exc.status >= 500 or exc.status == 429))

        retrying = self._policy.retrying(retry_if=repeatable, sleep=self._sleep, rng=self._rng)
        return await retrying(self._put_part_once, url, data)

    async def _put_part_once(self, url: str, data: bytes) -> str:
        where = {"method": "PUT", "url": _strip_query(url)}
        try:
            resp = await self._s3.put(url, content=data)
        except httpx.TransportError as exc:
            raise TransportError(f"part upload: {type(exc).__name__}: {exc}", **where) from exc
        if resp.status_code >= 400:
            err = PartUploadError(f"S3 {resp.status_code}: {resp.text[:200]}", status=resp.status_code, **where)
            if resp.status_code >= 500 or resp.status_code == 429:
                err.retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._wall())
            raise err
        etag = resp.headers.get("ETag")
        if not etag:
            raise PartUploadError("S3 response without ETag", status=resp.status_code, **where)
        return etag

    async def upload_part(self, upload_id: str, part_number: int, data: bytes) -> UploadedPart:
        """Steps 2+3 for one part. The URL is fetched just before the PUT (presigned URLs expire);
        if S3 refuses it with 403 (expired) a fresh URL is fetched once."""
        url = await self.get_part_url(upload_id, part_number)
        try:
            etag = await self.put_part(url, data)
        except PartUploadError as exc:
            if exc.status != 403:
                raise
            etag = await self.put_part(await self.get_part_url(upload_id, part_number), data)
        return UploadedPart(part_number, etag)

    async def complete_upload(self, upload_id: str, parts: Iterable[PartLike], *,
                              media_uuid: str | None = None) -> str:
        """Step 4: PATCH /media/uploads/{id} with [{PartNumber, ETag}] sorted. Returns the media
        status (normally "processing"). If completion fails with a 4xx but `media_uuid` shows the
        media already processing/ready (a previous completion whose response was lost), that
        status is returned instead: resuming after a crash is safe."""
        plist = sorted((_as_part(p) for p in parts), key=lambda p: p.part_number)
        if not plist:
            raise ValueError("no parts to complete")
        try:
            body = await self._json("PATCH", f"/media/uploads/{quote(upload_id, safe='')}",
                                    json_body={"parts": [p.as_json() for p in plist]})
        except (ValidationError, NotFound, Conflict):
            if media_uuid is None:
                raise
            status = str((await self.get_media(media_uuid)).get("status", "")).lower()
            if status in _READY or status == "processing":
                return status
            raise
        return str(body.get("status", "processing")) if isinstance(body, dict) else "processing"

    async def get_media(self, media_uuid: str, variants: Sequence[str] | None = None) -> dict[str, Any]:
        """GET /media/{uuid} ({uuid, status, ...}); variants (main, thumbnail, blurred) to get URLs."""
        params = {"variants": ",".join(variants)} if variants else None
        body = await self._json("GET", f"/media/{quote(media_uuid, safe='')}", params=params)
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"GET /media/{media_uuid} did not return an object")
        return body

    async def wait_media_ready(self, media_uuid: str, timeout: float = 120.0, poll: float = 2.0) -> dict[str, Any]:
        """Step 5: poll until ready. Raises MediaProcessingError on status error and MediaNotReady
        when `timeout` (seconds, on the injected clock) passes first."""
        deadline = self._clock() + timeout
        status: str | None = None
        while True:
            media = await self.get_media(media_uuid)
            status = str(media.get("status", "")).lower() or None
            if status in _READY:
                return media
            if status in _FAILED:
                raise MediaProcessingError(f"Fanvue failed to process media {media_uuid}", media_uuid=media_uuid,
                                           body=media)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise MediaNotReady(f"media {media_uuid} not ready after {timeout:.0f}s (status {status})",
                                    media_uuid=media_uuid, last_status=status)
            await self._sleep(min(poll, remaining))

    async def upload_file(self, data: bytes, filename: str, media_type: str = "image",
                          part_size: int = MIN_PART_SIZE, *, name: str | None = None) -> str:
        """Steps 1-4 in one go: create the session, upload every part, complete. Returns the media
        uuid (status processing; call wait_media_ready before attaching or sending it)."""
        slices = split_parts(len(data), part_size)
        session = await self.create_upload(name or filename, filename, media_type)
        parts = [await self.upload_part(session.upload_id, n, data[a:b]) for n, a, b in slices]
        await self.complete_upload(session.upload_id, parts, media_uuid=session.media_uuid)
        return session.media_uuid

    # ------------------------------------------------------------------ vault folders

    async def list_vault_folders(self, *, max_pages: int = 100) -> list[dict[str, Any]]:
        """All folders. Whether GET /vault/folders takes page/size is unknown (§9.9): the first
        request sends none; more pages are asked for only while the response says hasMore, and
        paging stops when a page brings nothing new (a server that ignores `page`)."""
        out: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] | None = None
        for page in range(1, max_pages + 1):
            body = await self._json("GET", "/vault/folders", params=params)
            items = body.get("data", []) if isinstance(body, dict) else (body or [])
            new = 0
            for f in items:
                if isinstance(f, dict) and f.get("name") is not None and f["name"] not in out:
                    out[f["name"]] = f
                    new += 1
            pagination = (body.get("pagination") or {}) if isinstance(body, dict) else {}
            if not pagination.get("hasMore") or new == 0:
                break
            # Keep the page size the server used for page 1, or page 2 would skip/overlap items.
            params = {"page": page + 1}
            if isinstance(pagination.get("size"), int):
                params["size"] = pagination["size"]
        return list(out.values())

    async def ensure_vault_folder(self, name: str) -> str:
        """Create the folder; 409 means it exists. Folders are identified by name: returns the
        name as Fanvue stores it."""
        if not name or len(name) > 255:
            raise ValueError("folder name must be 1-255 characters")
        try:
            body = await self._json("POST", "/vault/folders", json_body={"name": name})
            return str(body.get("name") or name) if isinstance(body, dict) else name
        except Conflict:
            pass
        try:
            body = await self._json("GET", f"/vault/folders/{quote(name, safe='')}")
            return str(body.get("name") or name) if isinstance(body, dict) else name
        except NotFound:
            # A conflict without an exact match: e.g. a case-insensitive uniqueness rule.
            for f in await self.list_vault_folders():
                if str(f["name"]).casefold() == name.casefold():
                    return str(f["name"])
            raise Conflict(f"vault folder {name!r} conflicts but cannot be found", status=409)

    async def attach_to_folder(self, folder: str, media_uuids: str | Sequence[str]) -> int:
        """POST /vault/folders/{name}/media. Returns addedCount; 409 (already there) counts as 0."""
        uuids = [media_uuids] if isinstance(media_uuids, str) else list(media_uuids)
        if not uuids:
            return 0
        try:
            body = await self._json("POST", f"/vault/folders/{quote(folder, safe='')}/media",
                                    json_body={"mediaUuids": uuids})
        except Conflict:
            return 0
        count = body.get("addedCount") if isinstance(body, dict) else None
        return int(count) if isinstance(count, (int, float)) else len(uuids)

    # ------------------------------------------------------------------ posts

    async def create_post(self, text: str | None, audience: str, media_uuids: Sequence[str] = (),
                          publish_at: datetime | None = None, *, price_cents: int | None = None,
                          expires_at: datetime | None = None) -> dict[str, Any]:
        """POST /posts. Never repeated once the request may have reached Fanvue: a lost response
        raises (TransportError.ambiguous / ServerError) and the caller must check GET /posts."""
        if audience not in AUDIENCES:
            raise ValueError(f"audience must be one of {AUDIENCES}")
        payload: dict[str, Any] = {"audience": audience}
        if text:
            payload["text"] = text
        if media_uuids:
            payload["mediaUuids"] = list(media_uuids)
        if price_cents is not None:
            if not media_uuids:
                raise ValueError("a paid post needs media")
            payload["price"] = int(price_cents)
        if publish_at is not None:
            payload["publishAt"] = _iso(publish_at)
        if expires_at is not None:
            payload["expiresAt"] = _iso(expires_at)
        body = await self._json("POST", "/posts", json_body=payload, idempotent=False)
        if not isinstance(body, dict):
            raise UnexpectedResponse("POST /posts did not return an object")
        return body

    # ------------------------------------------------------------------ chat messages (sends)

    async def send_chat_message(self, fan_uuid: str, text: str | None, media_uuids: Sequence[str] = (),
                                price_cents: int | None = None) -> str:
        """POST /chats/{fan}/message {text, mediaUuids, price (integer cents)} -> messageUuid.
        Never repeated once the request may have reached Fanvue (no idempotency key): a lost
        response raises TransportError(ambiguous=True) or ServerError and the caller reconciles
        by reading the fan's messages."""
        payload: dict[str, Any] = {"text": text or ""}
        if media_uuids:
            payload["mediaUuids"] = list(media_uuids)
        if price_cents:
            if not media_uuids:
                raise ValueError("a priced (PPV) message needs media")
            payload["price"] = int(price_cents)
        body = await self._json("POST", f"/chats/{quote(fan_uuid, safe='')}/message", json_body=payload,
                                idempotent=False)
        message = _first(body, "messageUuid", "uuid", "id")
        if not message:
            raise UnexpectedResponse(f"send message without messageUuid: {body!r}")
        return str(message)

    async def chat_messages(self, fan_uuid: str, *, page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], bool]:
        """GET /chats/{fan}/messages (newest first) -> (messages, has_more). No conversation
        (404) is an empty list."""
        try:
            body = await self._json("GET", f"/chats/{quote(fan_uuid, safe='')}/messages",
                                    params={"page": page, "size": max(1, min(50, size))})
        except NotFound:
            return [], False
        items = body.get("data", []) if isinstance(body, dict) else (body or [])
        pagination = (body.get("pagination") or {}) if isinstance(body, dict) else {}
        return [m for m in items if isinstance(m, dict)], bool(pagination.get("hasMore"))


    # ------------------------------------------------------------------ ingress (sync loop)

    async def list_chats(self, *, page: int = 1, size: int = 50) -> tuple[list[dict[str, Any]], bool]:
        """GET /chats, most recent messages first -> (chats, has_more). Each chat has `user{uuid,..}`
        and `lastMessageAt`."""
        body = await self._json("GET", "/chats", params={"page": page, "size": max(1, min(50, size)),
                                                         "sortBy": "most_recent_messages"})
        items = body.get("data", []) if isinstance(body, dict) else (body or [])
        pagination = (body.get("pagination") or {}) if isinstance(body, dict) else {}
        return [c for c in items if isinstance(c, dict)], bool(pagination.get("hasMore"))

    async def earnings(self, start: datetime, end: datetime, *, cursor: str | None = None,
                       size: int = 50) -> tuple[list[dict[str, Any]], str | None]:
        """GET /insights/earnings for [start, end) -> (rows, next cursor or None at the end).
        Rows: {date, gross, net, currency, source, user{uuid,...}|null}; no purchase ids."""
        params: dict[str, Any] = {"startDate": _iso(start), "endDate": _iso(end), "size": max(1, min(50, size))}
        if cursor:
            params["cursor"] = cursor
        body = await self._json("GET", "/insights/earnings", params=params)
        items = body.get("data", []) if isinstance(body, dict) else []
        nxt = body.get("nextCursor") if isinstance(body, dict) else None
        return [r for r in items if isinstance(r, dict)], (str(nxt) if nxt else None)


    async def list_posts(self, *, page: int = 1, size: int = 50) -> list[dict[str, Any]]:
        """GET /posts (page, size): the creator's posts, newest first, each with its mediaUuids."""
        body = await self._json("GET", "/posts", params={"page": page, "size": size})
        items = body.get("data", []) if isinstance(body, dict) else (body or [])
        return [p for p in items if isinstance(p, dict)]

    async def find_post_with_media(self, media_uuid: str, *, recent: int = 50) -> dict[str, Any] | None:
        """The most recent post (among the last `recent`) that carries `media_uuid`, or None:
        how a create_post that failed ambiguously is reconciled before it is tried again."""
        for post in await self.list_posts(size=recent):
            if media_uuid in (post.get("mediaUuids") or []):
                return post
        return None


# ----------------------------------------------------------------------------- helpers


def parse_part_url(text: str) -> str | None:
    """JSON string → it; JSON object → url/signedUrl/...; otherwise the stripped text."""
    text = text.strip()
    candidate: Any = text
    try:
        candidate = json.loads(text)
    except ValueError:
        pass
    if isinstance(candidate, dict):
        candidate = _first(candidate, "url", "signedUrl", "uploadUrl", "presignedUrl")
    if isinstance(candidate, str) and candidate.strip().startswith(("https://", "http://")):
        return candidate.strip()
    return None


def _first(body: Any, *keys: str) -> Any:
    if not isinstance(body, dict):
        return None
    for k in keys:
        if body.get(k):
            return body[k]
    return None


def _as_part(p: PartLike) -> UploadedPart:
    if isinstance(p, UploadedPart):
        return p
    if isinstance(p, tuple):
        return UploadedPart(int(p[0]), str(p[1]))
    num = p.get("PartNumber", p.get("part_number"))
    etag = p.get("ETag", p.get("etag"))
    if num is None or not etag:
        raise ValueError(f"not a part: {p!r}")
    return UploadedPart(int(num), str(etag))


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("datetimes sent to Fanvue must be timezone-aware")
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]  # never log presigned signatures
