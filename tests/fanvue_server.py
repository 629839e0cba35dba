"""A test Fanvue: a real HTTP server (starlette app served by uvicorn in a background thread on
127.0.0.1, free port) with in-memory state, implementing the endpoints vaultline's client uses,
the OAuth endpoints, and presigned "S3" part URLs served on itself.

It is strict where real Fanvue/S3 would be (version header, bearer token, PKCE, single-use rotating
refresh tokens with reuse detection, part-URL signatures and expiry, ETags, the 5 MiB minimum part
size) and records what a client must not do (`violations`: Fanvue headers sent to a part URL).

Fault injection, for the next matching requests (queue) or at random (seeded RNG):
    server.inject("429", n=1, retry_after="2")            # Retry-After seconds or HTTP date
    server.inject("429", retry_after=None, reset="1700000000")
    server.inject("500", n=2, endpoint="media.get")       # any status >= 500 via status=503
    server.inject("slow", delay=1.0)                      # delay, then handle normally (ambiguous)
    server.inject("401", n=1)                             # "expired token" for the next call(s)
    server.inject("error", status=403, body={"message": "Missing scope"})
    server.set_random_faults(0.2, kinds=("429", "500", "slow", "401"), seed=7)
    gate = server.hold("oauth.token"); ...; gate.release()  # park requests until released
Observation: `counts[route]` (route names below), `requests` (method, path, route, headers),
`violations`, `faults_served`, state dicts `media`, `folders`, `posts`, `uploads`.

Routes: oauth.authorize, oauth.token, users.me, media.create_upload, media.part_url, s3.put_part,
media.complete_upload, media.get, vault.list, vault.create, vault.get, vault.attach,
vault.list_media, posts.create, posts.list, chats.send, chats.messages, chats.list, insights.earnings.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

API_VERSION = "2025-06-26"
MiB = 1024 * 1024
API_FAULT_KINDS = ("429", "500", "slow", "401", "error")


@dataclass
class Fault:
    kind: str  # "429" | "500" | "slow" | "401" | "error" (any status + body)
    endpoint: str | None = None  # route name; None = any API or part-upload route
    retry_after: str | None = "1"
    reset: str | None = None
    status: int = 500
    delay: float = 1.0
    body: Any = None


@dataclass
class RecordedRequest:
    method: str
    path: str
    route: str
    headers: dict[str, str]


class Gate:
    """Requests to a held route wait here until `release()`. `entered` counts arrivals."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.entered = 0

    def release(self) -> None:
        self._event.set()

    async def _wait(self) -> None:
        self.entered += 1
        await asyncio.get_running_loop().run_in_executor(None, self._event.wait, 30)


@dataclass
class _Upload:
    upload_id: str
    media_uuid: str
    parts: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # n -> (etag, data)
    completed: bool = False


class FanvueTestServer:
    def __init__(self, *, path_prefix: str = "", client_id: str = "test-client",
                 client_secret: str = "test-secret", part_url_shape: str = "text",
                 min_part_size: int = 5 * MiB, access_token_ttl: int = 3600,
                 part_url_ttl: int = 900, seed: int = 0) -> None:
        self.path_prefix = ("/" + path_prefix.strip("/")) if path_prefix.strip("/") else ""
        self.client_id = client_id
        self.client_secret = client_secret
        self.part_url_shape = part_url_shape  # "text" | "json_string" | "json_object"
        self.min_part_size = min_part_size
        self.access_token_ttl = access_token_ttl
        self.part_url_ttl = part_url_ttl
        # Media processing after completion: `processing_polls` GETs still say "processing",
        # then the media becomes `processing_outcome` ("ready" | "error" | "never").
        self.processing_polls = 0
        self.processing_outcome = "ready"
        self.user = {"uuid": str(uuid.uuid4()), "handle": "elena", "displayName": "Elena",
                     "email": "elena@example.test", "isCreator": True}

        self._lock = threading.RLock()
        self._sign_key = secrets.token_bytes(32)
        self._rng = random.Random(seed)
        self._faults: list[Fault] = []
        self._random_rate = 0.0
        self._random_kinds: tuple[str, ...] = ()
        self._random_endpoints: set[str] | None = None
        self._random_params: dict[str, Any] = {}
        self._gates: dict[str, Gate] = {}
        self._closing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

        self.counts: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.faults_served: Counter[str] = Counter()
        self.access_tokens: dict[str, dict[str, Any]] = {}  # token -> {family, expires_at}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # token -> {family, used, scope}
        self.revoked_families: set[str] = set()
        self.codes: dict[str, dict[str, Any]] = {}
        self.last_authorize: dict[str, str] = {}
        self.uploads: dict[str, _Upload] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []
        self.completions: list[list[dict[str, Any]]] = []  # parts lists of accepted completions
        self.chats: dict[str, list[dict[str, Any]]] = {}  # fan uuid -> messages, oldest first
        self.uncontactable: set[str] = set()  # fan uuids the creator cannot message
        self.list_media_uuids = True  # False: message listings omit mediaUuids (older API docs)
        self._hang_after_commit: dict[str, list[float]] = {}
        self.earnings: list[dict[str, Any]] = []  # GET /insights/earnings rows (see add_earning)
        self.fans: dict[str, dict[str, Any]] = {}  # fan uuid -> user object shown in GET /chats

        p = self.path_prefix
        self.app = Starlette(exception_handlers={ClientDisconnect: self._disconnected}, routes=[
            Route("/oauth2/auth", self._authorize, methods=["GET"], name="oauth.authorize"),
            Route("/oauth2/token", self._token, methods=["POST"], name="oauth.token"),
            Route("/s3/parts/{upload_id}/{n:int}", self._put_part, methods=["PUT"], name="s3.put_part"),
            Route(f"{p}/users/me", self._me, methods=["GET"], name="users.me"),
            Route(f"{p}/media/uploads", self._create_upload, methods=["POST"], name="media.create_upload"),
            Route(f"{p}/media/uploads/{{upload_id}}/parts/{{n:int}}/url", self._part_url, methods=["GET"],
                  name="media.part_url"),
            Route(f"{p}/media/uploads/{{upload_id}}", self._complete, methods=["PATCH"],
                  name="media.complete_upload"),
            Route(f"{p}/media/{{media_uuid}}", self._get_media, methods=["GET"], name="media.get"),
            Route(f"{p}/vault/folders", self._list_folders, methods=["GET"], name="vault.list"),
            Route(f"{p}/vault/folders", self._create_folder, methods=["POST"], name="vault.create"),
            Route(f"{p}/vault/folders/{{name}}", self._get_folder, methods=["GET"], name="vault.get"),
            Route(f"{p}/vault/folders/{{name}}/media", self._attach, methods=["POST"], name="vault.attach"),
            Route(f"{p}/vault/folders/{{name}}/media", self._folder_media, methods=["GET"],
                  name="vault.list_media"),
            Route(f"{p}/posts", self._create_post, methods=["POST"], name="posts.create"),
            Route(f"{p}/posts", self._list_posts, methods=["GET"], name="posts.list"),
            # --- chats (sends): POST /chats/{fan}/message, GET /chats/{fan}/messages
            Route(f"{p}/chats/{{fan}}/message", self._send_chat_message, methods=["POST"], name="chats.send"),
            Route(f"{p}/chats/{{fan}}/messages", self._chat_messages, methods=["GET"], name="chats.messages"),
            # --- ingress (sync loop): GET /chats, GET /insights/earnings
            Route(f"{p}/chats", self._list_chats, methods=["GET"], name="chats.list"),
            Route(f"{p}/insights/earnings", self._earnings, methods=["GET"], name="insights.earnings"),
        ])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/oauth2/auth"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth2/token"

    def start(self) -> "FanvueTestServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"fanvue-test-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test Fanvue server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        for g in self._gates.values():
            g.release()
        if self._loop is not None and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)  # cut pending "slow" faults short
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)

    def __enter__(self) -> "FanvueTestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    async def _disconnected(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # the client gave up (timeout): nobody reads this

    # ------------------------------------------------------------------ test controls

    def issue_tokens(self, scope: str = "openid offline_access offline read:self read:media write:media "
                                         "read:post write:post") -> dict[str, Any]:
        """A fresh grant, as if the user had logged in: {access_token, refresh_token, expires_in, scope}."""
        with self._lock:
            return self._new_grant(uuid.uuid4().hex, scope)

    def expire_access_token(self, token: str) -> None:
        with self._lock:
            if token in self.access_tokens:
                self.access_tokens[token]["expires_at"] = 0.0

    def refresh_token_valid(self, token: str) -> bool:
        with self._lock:
            rt = self.refresh_tokens.get(token)
            return bool(rt) and not rt["used"] and rt["family"] not in self.revoked_families

    def inject(self, kind: str, n: int = 1, *, endpoint: str | None = None, **params: Any) -> None:
        if kind not in API_FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {API_FAULT_KINDS}")
        with self._lock:
            self._faults.extend(Fault(kind, endpoint, **params) for _ in range(n))

    def set_random_faults(self, rate: float, *, kinds: tuple[str, ...] = ("429", "500", "slow"),
                          seed: int | None = None, endpoints: set[str] | None = None, **params: Any) -> None:
        """Each API/part request fails with probability `rate`, kind drawn from `kinds`."""
        with self._lock:
            self._random_rate = rate
            self._random_kinds = kinds
            self._random_endpoints = endpoints
            self._random_params = params
            if seed is not None:
                self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random_rate = 0.0

    def hold(self, route: str) -> Gate:
        gate = self._gates[route] = Gate()
        return gate

    def expire_part_urls(self) -> None:
        """Every part URL handed out so far now fails with 403 (as an expired S3 signature)."""
        with self._lock:
            self._sign_key = secrets.token_bytes(32)

    def count(self, route: str) -> int:
        with self._lock:
            return self.counts[route]

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until predicate() (condition with a deadline, for sync tests)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(0.005)

    # ------------------------------------------------------------------ plumbing

    def _record(self, request: Request, route: str) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()
        with self._lock:
            self.counts[route] += 1
            self.requests.append(RecordedRequest(request.method, request.url.path, route,
                                                 {k.lower(): v for k, v in request.headers.items()}))

    async def _enter(self, request: Request, route: str, *, api: bool = True) -> Response | None:
        """Record, wait at a gate, apply a fault, check version + bearer. A Response = stop here."""
        self._record(request, route)
        gate = self._gates.get(route)
        if gate is not None:
            await gate._wait()
        fault = self._take_fault(route, api=api)
        if fault is not None:
            with self._lock:
                self.faults_served[fault.kind] += 1
            if fault.kind == "slow":
                assert self._closing is not None
                await request.body()  # read (and cache) it now: the client will have hung up later
                try:
                    await asyncio.wait_for(self._closing.wait(), fault.delay)
                except TimeoutError:
                    pass
            elif fault.kind == "429":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                if fault.reset is not None:
                    headers["X-RateLimit-Reset"] = fault.reset
                headers["X-RateLimit-Remaining"] = "0"
                return JSONResponse({"message": "Too many requests"}, 429, headers=headers)
            elif fault.kind == "500":
                return JSONResponse({"message": "Internal server error"}, fault.status)
            elif fault.kind == "401":
                return JSONResponse({"error": "Token expired"}, 401)
            elif fault.kind == "error":
                return JSONResponse(fault.body, fault.status)
        if not api:
            return None
        version = request.headers.get("x-fanvue-api-version")
        if version != API_VERSION:
            return JSONResponse({"error": "Unsupported API version",
                                 "message": f"API version '{version}' is not supported"}, 400)
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self._lock:
            info = self.access_tokens.get(token)
            ok = info is not None and info["expires_at"] > time.time() and info["family"] not in self.revoked_families
        if not ok:
            return JSONResponse({"error": "Invalid or expired token"}, 401)
        return None

    def _take_fault(self, route: str, *, api: bool) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.endpoint is not None and f.endpoint != route:
                    continue
                if f.endpoint is None and (route.startswith("oauth.") or (f.kind in ("401", "error") and not api)):
                    continue
                return self._faults.pop(i)
            if self._random_rate and not route.startswith("oauth."):
                if self._random_endpoints is not None and route not in self._random_endpoints:
                    return None
                if self._rng.random() < self._random_rate:
                    kinds = [k for k in self._random_kinds if api or k not in ("401", "error")]
                    if kinds:
                        return Fault(self._rng.choice(kinds), **self._random_params)
        return None

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            return None

    # ------------------------------------------------------------------ OAuth

    def _new_grant(self, family: str, scope: str) -> dict[str, Any]:
        access, refresh = "at_" + secrets.token_urlsafe(24), "rt_" + secrets.token_urlsafe(24)
        self.access_tokens[access] = {"family": family, "expires_at": time.time() + self.access_token_ttl}
        self.refresh_tokens[refresh] = {"family": family, "used": False, "scope": scope}
        return {"access_token": access, "refresh_token": refresh, "expires_in": self.access_token_ttl,
                "token_type": "bearer", "scope": scope}

    async def _authorize(self, request: Request) -> Response:
        self._record(request, "oauth.authorize")
        q = dict(request.query_params)
        with self._lock:
            self.last_authorize = q
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, 400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 required"}, 400)
        code = secrets.token_urlsafe(16)
        with self._lock:
            self.codes[code] = {"redirect_uri": q.get("redirect_uri"), "challenge": q["code_challenge"],
                                "scope": q.get("scope", ""), "used": False}
        sep = "&" if "?" in q.get("redirect_uri", "") else "?"
        return RedirectResponse(f"{q['redirect_uri']}{sep}{urlencode({'code': code, 'state': q.get('state', '')})}",
                                302)

    async def _token(self, request: Request) -> Response:
        if resp := await self._enter(request, "oauth.token", api=False):
            return resp
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        with self._lock:
            self.counts[f"oauth.token:{form.get('grant_type')}"] += 1
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            return JSONResponse({"error": "invalid_client"}, 401)
        if "client_secret" in form:
            return JSONResponse({"error": "invalid_request", "error_description": "secret in body"}, 400)
        grant = form.get("grant_type")
        with self._lock:
            if grant == "authorization_code":
                c = self.codes.get(form.get("code", ""))
                if c is None or c["used"] or c["redirect_uri"] != form.get("redirect_uri"):
                    return JSONResponse({"error": "invalid_grant"}, 400)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if not hmac.compare_digest(challenge, c["challenge"]):
                    return JSONResponse({"error": "invalid_grant", "error_description": "PKCE mismatch"}, 400)
                c["used"] = True
                return JSONResponse(self._new_grant(uuid.uuid4().hex, c["scope"]))
            if grant == "refresh_token":
                rt = self.refresh_tokens.get(form.get("refresh_token", ""))
                if rt is None or rt["family"] in self.revoked_families:
                    return JSONResponse({"error": "invalid_grant"}, 400)
                if rt["used"]:
                    # Reuse detection: a replayed refresh token revokes the whole grant.
                    self.revoked_families.add(rt["family"])
                    return JSONResponse({"error": "invalid_grant", "error_description": "refresh token reused"}, 400)
                rt["used"] = True
                for info in self.access_tokens.values():  # rotation retires older access tokens
                    if info["family"] == rt["family"]:
                        info["expires_at"] = min(info["expires_at"], time.time())
                return JSONResponse(self._new_grant(rt["family"], rt["scope"]))
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    # ------------------------------------------------------------------ API

    async def _me(self, request: Request) -> Response:
        if resp := await self._enter(request, "users.me"):
            return resp
        return JSONResponse({**self.user, "createdAt": "2025-01-01T00:00:00Z"})

    async def _create_upload(self, request: Request) -> Response:
        if resp := await self._enter(request, "media.create_upload"):
            return resp
        body = await self._body(request)
        errors = []
        if not isinstance(body, dict):
            errors.append("body must be an object")
            body = {}
        for key in ("name", "filename"):
            if not isinstance(body.get(key), str) or not 1 <= len(body[key]) <= 255:
                errors.append(f"{key} must be a string of 1-255 characters")
        if body.get("mediaType") not in ("image", "video", "audio", "document"):
            errors.append("mediaType must be one of image, video, audio, document")
        if extra := set(body) - {"name", "filename", "mediaType"}:
            errors.append(f"unknown fields: {sorted(extra)}")
        if errors:
            return JSONResponse({"errors": errors}, 400)
        media_uuid, upload_id = str(uuid.uuid4()), "up_" + secrets.token_hex(12)
        with self._lock:
            self.uploads[upload_id] = _Upload(upload_id, media_uuid)
            self.media[media_uuid] = {"uuid": media_uuid, "status": "created", "name": body["name"],
                                      "filename": body["filename"], "mediaType": body["mediaType"],
                                      "createdAt": datetime.now(timezone.utc).isoformat()}
        return JSONResponse({"mediaUuid": media_uuid, "uploadId": upload_id})

    def _signature(self, upload_id: str, n: int, expires: int) -> str:
        return hmac.new(self._sign_key, f"{upload_id}:{n}:{expires}".encode(), hashlib.sha256).hexdigest()

    async def _part_url(self, request: Request) -> Response:
        if resp := await self._enter(request, "media.part_url"):
            return resp
        upload_id, n = request.path_params["upload_id"], request.path_params["n"]
        with self._lock:
            up = self.uploads.get(upload_id)
            if up is None or up.completed:
                return JSONResponse({"message": "Upload session not found"}, 404)
            expires = int(time.time()) + self.part_url_ttl
            sig = self._signature(upload_id, n, expires)
        url = (f"{self.base_url}/s3/parts/{quote(upload_id)}/{n}?X-Amz-Expires={expires}"
               f"&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}")
        if self.part_url_shape == "json_string":
            return Response(json.dumps(url), media_type="application/json")
        if self.part_url_shape == "json_object":
            return JSONResponse({"url": url})
        return PlainTextResponse(url)

    async def _put_part(self, request: Request) -> Response:
        if resp := await self._enter(request, "s3.put_part", api=False):
            return resp
        for h in request.headers:
            if h.lower() == "authorization" or h.lower().startswith("x-fanvue"):
                with self._lock:
                    self.violations.append(f"part PUT carried header {h}")
            if h.lower() == "content-type":
                with self._lock:
                    self.violations.append("part PUT carried Content-Type, which is not a signed header")
        upload_id, n = request.path_params["upload_id"], request.path_params["n"]
        q = request.query_params
        try:
            expires = int(q.get("X-Amz-Expires", "0"))
        except ValueError:
            expires = 0
        with self._lock:
            good = hmac.compare_digest(q.get("X-Amz-Signature", ""), self._signature(upload_id, n, expires))
        if not good or expires < time.time():
            return Response("<Error><Code>AccessDenied</Code><Message>Request has expired or signature "
                            "does not match</Message></Error>", 403, media_type="application/xml")
        data = await request.body()
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        with self._lock:
            up = self.uploads.get(upload_id)
            if up is None or up.completed:
                return Response("<Error><Code>NoSuchUpload</Code></Error>", 404, media_type="application/xml")
            up.parts[n] = (etag, data)
        return Response(b"", 200, headers={"ETag": etag})

    async def _complete(self, request: Request) -> Response:
        if resp := await self._enter(request, "media.complete_upload"):
            return resp
        body = await self._body(request)
        upload_id = request.path_params["upload_id"]
        with self._lock:
            up = self.uploads.get(upload_id)
            if up is None:
                return JSONResponse({"message": "Upload session not found"}, 404)
            if up.completed:
                return JSONResponse({"errors": ["Upload session already completed"]}, 400)
            parts = body.get("parts") if isinstance(body, dict) else None
            if not isinstance(parts, list) or not parts:
                return JSONResponse({"errors": ["parts must be a non-empty array"]}, 400)
            numbers = [p.get("PartNumber") for p in parts if isinstance(p, dict)]
            if numbers != list(range(1, len(parts) + 1)) or set(numbers) != set(up.parts):
                return JSONResponse({"errors": [f"parts {numbers} do not match uploaded parts {sorted(up.parts)}"]}, 400)
            for p in parts:
                etag, data = up.parts[p["PartNumber"]]
                if str(p.get("ETag", "")).strip('"') != etag.strip('"'):
                    return JSONResponse({"errors": [f"ETag mismatch for part {p['PartNumber']}"]}, 400)
                if p["PartNumber"] != len(parts) and len(data) < self.min_part_size:
                    return JSONResponse({"errors": [f"part {p['PartNumber']} smaller than 5 MiB (EntityTooSmall)"]}, 400)
            blob = b"".join(up.parts[i][1] for i in range(1, len(parts) + 1))
            up.completed = True
            self.completions.append(parts)
            m = self.media[up.media_uuid]
            m.update(status="processing", size=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                     parts=len(parts), _polls_left=self.processing_polls, _outcome=self.processing_outcome)
            up.parts = {k: (e, b"") for k, (e, _) in up.parts.items()}  # free memory, keep ETags
        return JSONResponse({"status": "processing"})

    async def _get_media(self, request: Request) -> Response:
        if resp := await self._enter(request, "media.get"):
            return resp
        with self._lock:
            m = self.media.get(request.path_params["media_uuid"])
            if m is None:
                return JSONResponse({"message": "Media not found"}, 404)
            if m["status"] == "processing":
                if m["_polls_left"] > 0:
                    m["_polls_left"] -= 1
                elif m["_outcome"] in ("ready", "error"):
                    m["status"] = m["_outcome"]
            out = {k: v for k, v in m.items() if not k.startswith("_")}
        variants = [v for v in request.query_params.get("variants", "").split(",") if v]
        out["variants"] = ([{"variantType": v, "url": f"{self.base_url}/cdn/{out['uuid']}/{v}"} for v in variants]
                           if out["status"] == "ready" else [])
        return JSONResponse(out)

    def _folder_json(self, f: dict[str, Any]) -> dict[str, Any]:
        return {"name": f["name"], "createdAt": f["createdAt"], "mediaCount": len(f["media"])}

    async def _list_folders(self, request: Request) -> Response:
        if resp := await self._enter(request, "vault.list"):
            return resp
        page = int(request.query_params.get("page", 1))
        size = int(request.query_params.get("size", 15))
        with self._lock:
            items = [self._folder_json(f) for f in self.folders.values()]
        return _paged(items, page, size)

    async def _create_folder(self, request: Request) -> Response:
        if resp := await self._enter(request, "vault.create"):
            return resp
        body = await self._body(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            return JSONResponse({"errors": ["name must be a string of 1-255 characters"]}, 400)
        with self._lock:
            if name in self.folders:
                return JSONResponse({"message": "A folder with this name already exists"}, 409)
            f = self.folders[name] = {"name": name, "createdAt": datetime.now(timezone.utc).isoformat(), "media": []}
            return JSONResponse(self._folder_json(f), 201)

    async def _get_folder(self, request: Request) -> Response:
        if resp := await self._enter(request, "vault.get"):
            return resp
        with self._lock:
            f = self.folders.get(request.path_params["name"])
            if f is None:
                return JSONResponse({"message": "Folder not found"}, 404)
            return JSONResponse(self._folder_json(f))

    async def _attach(self, request: Request) -> Response:
        if resp := await self._enter(request, "vault.attach"):
            return resp
        body = await self._body(request)
        uuids = body.get("mediaUuids") if isinstance(body, dict) else None
        if not isinstance(uuids, list) or not uuids:
            return JSONResponse({"errors": ["mediaUuids must be a non-empty array"]}, 400)
        with self._lock:
            f = self.folders.get(request.path_params["name"])
            if f is None:
                return JSONResponse({"message": "Folder not found"}, 404)
            missing = [u for u in uuids if u not in self.media]
            if missing:
                return JSONResponse({"message": f"Media not found: {missing}"}, 404)
            added = [u for u in uuids if u not in f["media"]]
            f["media"].extend(added)
        return JSONResponse({"addedCount": len(added)}, 201)

    async def _folder_media(self, request: Request) -> Response:
        if resp := await self._enter(request, "vault.list_media"):
            return resp
        with self._lock:
            f = self.folders.get(request.path_params["name"])
            if f is None:
                return JSONResponse({"message": "Folder not found"}, 404)
            data = [{"uuid": u, "name": self.media[u]["name"], "mediaType": self.media[u]["mediaType"],
                     "createdAt": self.media[u]["createdAt"]} for u in f["media"]]
        return JSONResponse({"data": data, "pagination": {"page": 1, "size": len(data), "hasMore": False}})

    async def _list_posts(self, request: Request) -> Response:
        if resp := await self._enter(request, "posts.list"):
            return resp
        page = max(1, int(request.query_params.get("page", 1)))
        size = max(1, int(request.query_params.get("size", 15)))
        with self._lock:
            items = list(reversed(self.posts))  # newest first
        return _paged(items, page, size)

    async def _create_post(self, request: Request) -> Response:
        if resp := await self._enter(request, "posts.create"):
            return resp
        body = await self._body(request)
        if not isinstance(body, dict):
            return JSONResponse({"errors": ["body must be an object"]}, 400)
        errors = []
        if body.get("audience") not in ("subscribers", "followers-and-subscribers"):
            errors.append("audience must be one of subscribers, followers-and-subscribers")
        media = body.get("mediaUuids") or []
        with self._lock:
            for u in media:
                if self.media.get(u, {}).get("status") != "ready":
                    errors.append(f"media {u} is not ready")
        if body.get("price") is not None and not media:
            errors.append("price requires media")
        if errors:
            return JSONResponse({"errors": errors}, 400)
        post = {"uuid": str(uuid.uuid4()), "createdAt": datetime.now(timezone.utc).isoformat(),
                "text": body.get("text"), "price": body.get("price"), "audience": body["audience"],
                "publishAt": body.get("publishAt"), "publishedAt": None if body.get("publishAt") else
                datetime.now(timezone.utc).isoformat(), "expiresAt": body.get("expiresAt"), "mediaUuids": media}
        with self._lock:
            self.posts.append(post)
        return JSONResponse({k: v for k, v in post.items() if k != "mediaUuids"}, 201)

    # ------------------------------------------------------------------ chats (sends)
    # Controls: add_ready_media(), purchase(message_uuid), hang_after_commit(route, delay),
    # uncontactable.add(fan). State: chats[fan] (oldest first).

    def add_ready_media(self, n: int = 1) -> list[str]:
        """Media already uploaded and ready (as if the upload flow had run)."""
        out = []
        with self._lock:
            for _ in range(n):
                u = str(uuid.uuid4())
                self.media[u] = {"uuid": u, "status": "ready", "name": u, "mediaType": "image",
                                 "createdAt": datetime.now(timezone.utc).isoformat()}
                out.append(u)
        return out

    def hang_after_commit(self, route: str = "chats.send", delay: float = 2.0, n: int = 1) -> None:
        """The next `n` requests to `route` are processed and committed, then the response is held
        for `delay` s: a client timeout then cannot tell whether it happened."""
        with self._lock:
            self._hang_after_commit.setdefault(route, []).extend([delay] * n)

    async def _maybe_hang(self, route: str) -> None:
        with self._lock:
            delays = self._hang_after_commit.get(route)
            delay = delays.pop(0) if delays else None
        if delay is not None:
            assert self._closing is not None
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
            except TimeoutError:
                pass

    def purchase(self, message_uuid: str) -> dict[str, Any]:
        """The fan buys a PPV message: purchasedAt is set. Returns the message."""
        with self._lock:
            for msgs in self.chats.values():
                for m in msgs:
                    if m["uuid"] == message_uuid:
                        m["purchasedAt"] = datetime.now(timezone.utc).isoformat()
                        return dict(m)
        raise KeyError(message_uuid)

    def sent_messages(self, fan: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.chats.get(fan, [])]

    async def _send_chat_message(self, request: Request) -> Response:
        if resp := await self._enter(request, "chats.send"):
            return resp
        fan = request.path_params["fan"]
        body = await self._body(request)
        if not isinstance(body, dict):
            return JSONResponse({"errors": ["body must be an object"]}, 400)
        if fan in self.uncontactable:
            return JSONResponse({"message": "User cannot be contacted"}, 400)
        errors = []
        media = body.get("mediaUuids") or []
        price = body.get("price")
        if not isinstance(media, list):
            errors.append("mediaUuids must be an array")
            media = []
        with self._lock:
            for u in media:
                if self.media.get(u, {}).get("status") != "ready":
                    errors.append(f"media {u} is not ready or does not belong to you")
        if price is not None:
            if not isinstance(price, int) or isinstance(price, bool):
                errors.append("price must be an integer number of cents")
            elif price < 300:
                errors.append("price must be at least 300 (USD cents)")
            elif not media:
                errors.append("price requires media")
        if not body.get("text") and not media:
            errors.append("a message needs text or media")
        if errors:
            return JSONResponse({"errors": errors}, 400)
        message = {
            "uuid": str(uuid.uuid4()), "text": body.get("text"), "sentAt": datetime.now(timezone.utc).isoformat(),
            "sender": {"uuid": self.user["uuid"], "handle": self.user["handle"]},
            "recipient": {"uuid": fan, "handle": None}, "hasMedia": bool(media), "mediaType": "image" if media else None,
            "mediaUuids": list(media), "type": "SINGLE_RECIPIENT",
            "pricing": {"USD": {"price": price}} if price else None, "purchasedAt": None,
        }
        with self._lock:
            self.chats.setdefault(fan, []).append(message)
        await self._maybe_hang("chats.send")
        return JSONResponse({"messageUuid": message["uuid"]}, 201)

    async def _chat_messages(self, request: Request) -> Response:
        if resp := await self._enter(request, "chats.messages"):
            return resp
        fan = request.path_params["fan"]
        page = int(request.query_params.get("page", 1))
        size = max(1, min(50, int(request.query_params.get("size", 15))))
        with self._lock:
            if fan not in self.chats:
                return JSONResponse({"message": "Conversation not found"}, 404)
            newest_first = [dict(m) for m in reversed(self.chats[fan])]
            if not self.list_media_uuids:
                for m in newest_first:
                    m.pop("mediaUuids", None)
        chunk = newest_first[(page - 1) * size: page * size]
        return JSONResponse({"data": chunk, "pagination": {"page": page, "size": size,
                                                           "hasMore": page * size < len(newest_first)}})

    # ------------------------------------------------------------------ ingress (sync loop)
    # Controls: fan_says(fan, text) (a fan's message), add_earning(gross, ...). Routes: GET /chats
    # (most recent first, page-based), GET /insights/earnings (cursor-based, window by date).

    def fan_says(self, fan: str, text: str, *, handle: str | None = None,
                 sent_at: datetime | None = None) -> dict[str, Any]:
        """A message from fan `fan` to the creator. Returns it."""
        with self._lock:
            self.fans.setdefault(fan, {"uuid": fan, "handle": handle or f"fan-{fan[:6]}",
                                       "displayName": (handle or "Fan").title(), "nickname": None,
                                       "isTopSpender": False, "avatarUrl": None, "registeredAt": None})
            message = {
                "uuid": str(uuid.uuid4()), "text": text,
                "sentAt": (sent_at or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z"),
                "sender": {"uuid": fan, "handle": self.fans[fan]["handle"]},
                "recipient": {"uuid": self.user["uuid"], "handle": self.user["handle"]},
                "hasMedia": False, "mediaType": None, "mediaUuids": [], "type": "SINGLE_RECIPIENT",
                "pricing": None, "purchasedAt": None,
            }
            self.chats.setdefault(fan, []).append(message)
            return dict(message)

    def add_earning(self, gross: int, *, fan: str | None, source: str = "message", net: int | None = None,
                    date: datetime | None = None) -> dict[str, Any]:
        row = {"date": (date or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z"),
               "gross": gross, "net": net if net is not None else gross * 80 // 100, "currency": "USD",
               "source": source, "user": ({"uuid": fan, "handle": f"fan-{fan[:6]}", "displayName": "Fan",
                                           "nickname": None, "isTopSpender": False} if fan else None)}
        with self._lock:
            self.earnings.append(row)
        return row

    async def _list_chats(self, request: Request) -> Response:
        if resp := await self._enter(request, "chats.list"):
            return resp
        page = int(request.query_params.get("page", 1))
        size = max(1, min(50, int(request.query_params.get("size", 15))))
        with self._lock:
            chats = []
            for fan, msgs in self.chats.items():
                if not msgs:
                    continue
                last = msgs[-1]
                user = self.fans.get(fan) or {"uuid": fan, "handle": None, "displayName": None}
                chats.append({"createdAt": msgs[0]["sentAt"], "lastMessageAt": last["sentAt"], "isRead": False,
                              "isMuted": False, "unreadMessagesCount": 0, "user": user,
                              "lastMessage": {"text": last["text"], "type": last["type"], "uuid": last["uuid"],
                                              "sentAt": last["sentAt"], "hasMedia": last["hasMedia"],
                                              "mediaType": last["mediaType"], "senderUuid": last["sender"]["uuid"]}})
        chats.sort(key=lambda c: _instant(c["lastMessageAt"]), reverse=True)
        return _paged(chats, page, size)

    async def _earnings(self, request: Request) -> Response:
        if resp := await self._enter(request, "insights.earnings"):
            return resp
        q = request.query_params
        size = max(1, min(50, int(q.get("size", 20))))
        start, end = q.get("startDate"), q.get("endDate")
        try:
            lo = _instant(start) if start else None
            hi = _instant(end) if end else None
            offset = int(q["cursor"]) if q.get("cursor") else 0
        except ValueError:
            return JSONResponse({"errors": ["startDate, endDate must be ISO-8601; cursor as returned"]}, 400)
        with self._lock:
            rows = [r for r in self.earnings
                    if (lo is None or _instant(r["date"]) >= lo) and (hi is None or _instant(r["date"]) < hi)]
        rows.sort(key=lambda r: _instant(r["date"]), reverse=True)
        chunk = rows[offset: offset + size]
        more = offset + size < len(rows)
        return JSONResponse({"data": chunk, "nextCursor": str(offset + size) if more else None})


def _paged(items: list[Any], page: int, size: int) -> Response:
    """A page-based list response: {data, pagination: {page, size, hasMore}}."""
    return JSONResponse({"data": items[(page - 1) * size: page * size],
                         "pagination": {"page": page, "size": size, "hasMore": page * size < len(items)}})


def _instant(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
