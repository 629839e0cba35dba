"""Fanvue OAuth 2.0: authorization code + PKCE (S256), a one-shot loopback callback receiver,
the code → token exchange and refresh (research doc §1.2).

The token endpoint is called with `Authorization: Basic base64(client_id:client_secret)` and a
form body that also carries client_id (the official starter app does exactly this; a third-party
report says a secret in the body is rejected, so it is never put there).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from vaultline.adapters.fanvue import DEFAULT_AUTHORIZE_URL, DEFAULT_TOKEN_URL
from vaultline.adapters.fanvue.errors import (
    InvalidGrantError,
    OAuthError,
    OAuthStateMismatch,
    TransportError,
    UnexpectedResponse,
)
from vaultline.adapters.fanvue.tokens import TokenSet
from vaultline.adapters.retry_policies import FANVUE, RetryPolicy

# openid/offline_access/offline are required by Fanvue ("your app won't work without them");
# the rest is what vaultline uses: profile, vault upload + folders, posts, chat/PPV, fans, earnings.
DEFAULT_SCOPES: tuple[str, ...] = (
    "openid", "offline_access", "offline",
    "read:self", "read:media", "write:media", "read:post", "write:post",
    "read:chat", "write:chat", "read:fan", "read:insights",
)


# ----------------------------------------------------------------------------- PKCE


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str
    method: str = "S256"

    @classmethod
    def generate(cls) -> "Pkce":
        verifier = secrets.token_urlsafe(64)  # 86 chars of [A-Za-z0-9_-]; spec wants 43-128
        return cls(verifier, s256_challenge(verifier))


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    return secrets.token_urlsafe(32)


def build_authorize_url(*, client_id: str, redirect_uri: str, state: str, code_challenge: str,
                        scopes: Sequence[str] = DEFAULT_SCOPES,
                        authorize_url: str = DEFAULT_AUTHORIZE_URL,
                        extra: dict[str, str] | None = None) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    sep = "&" if "?" in authorize_url else "?"
    return f"{authorize_url}{sep}{urlencode(params)}"


# ----------------------------------------------------------------------------- token endpoint


class _TokenEndpointDown(Exception):
    """A 5xx from the token endpoint: repeated by the retry policy, then reported as its body says."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"token endpoint {response.status_code}")
        self.response = response


class OAuthClient:
    """Talks to the token endpoint. `refresher` (bound method `refresh_tokens`) is what
    TokenManager needs."""

    def __init__(self, client_id: str, client_secret: str | None = None, *,
                 token_url: str = DEFAULT_TOKEN_URL, authorize_url: str = DEFAULT_AUTHORIZE_URL,
                 timeout: float = 30.0, max_attempts: int = 3, retry_policy: RetryPolicy = FANVUE,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] = asyncio.sleep,
                 http: httpx.AsyncClient | None = None) -> None:
        if not client_id:
            raise OAuthError("no Fanvue client id (set VAULTLINE_FANVUE_CLIENT_ID)")
        self.client_id = client_id
        self._secret = client_secret
        self.token_url = token_url
        self.authorize_endpoint = authorize_url
        self._policy = retry_policy.with_attempts(max_attempts)
        self._clock = clock
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "OAuthClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def authorize_url(self, *, redirect_uri: str, state: str, code_challenge: str,
                      scopes: Sequence[str] = DEFAULT_SCOPES) -> str:
        return build_authorize_url(client_id=self.client_id, redirect_uri=redirect_uri, state=state,
                                   code_challenge=code_challenge, scopes=scopes,
                                   authorize_url=self.authorize_endpoint)

    async def exchange_code(self, code: str, *, redirect_uri: str, code_verifier: str) -> TokenSet:
        body = await self._post({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": code_verifier,
        })
        return TokenSet.from_token_response(body, now=self._clock())

    async def refresh_tokens(self, current: TokenSet) -> TokenSet:
        """Exchange current.refresh_token for a new set (the refresh token rotates)."""
        if not current.refresh_token:
            raise InvalidGrantError("no refresh token stored: log in again")
        body = await self._post({
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
            "client_id": self.client_id,
        })
        return TokenSet.from_token_response(body, now=self._clock(), previous=current)

    async def _post(self, form: dict[str, str]) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self._secret:
            basic = base64.b64encode(f"{self.client_id}:{self._secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"

        async def post_once() -> httpx.Response:
            try:
                resp = await self._http.post(self.token_url, data=form, headers=headers)
            except httpx.TransportError as exc:
                raise TransportError(f"token endpoint unreachable: {exc!r}",
                                     method="POST", url=self.token_url) from exc
            if resp.status_code >= 500:
                raise _TokenEndpointDown(resp)
            return resp

        # Retrying a refresh whose response was lost is no worse than not retrying: if the token
        # was consumed we get invalid_grant either way (or succeed within a reuse grace period,
        # if Fanvue has one). A 5xx still failing after the last attempt is reported below.
        retrying = self._policy.retrying(retry_if=lambda e: isinstance(e, (TransportError, _TokenEndpointDown)),
                                         sleep=self._sleep)
        try:
            resp = await retrying(post_once)
        except _TokenEndpointDown as down:
            resp = down.response
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            desc = body.get("error_description") if isinstance(body, dict) else None
            msg = ": ".join(str(x) for x in (err, desc) if x) or resp.text[:200] or "token request failed"
            cls = InvalidGrantError if err == "invalid_grant" else OAuthError
            if cls is InvalidGrantError:
                msg += " (refresh token already used or revoked: run `vaultline fanvue login` again)"
            raise cls(msg, status=resp.status_code, body=body, method="POST", url=self.token_url)
        if not isinstance(body, dict) or "access_token" not in body:
            raise UnexpectedResponse("token response without access_token", status=resp.status_code,
                                     method="POST", url=self.token_url)
        return body


# ----------------------------------------------------------------------------- loopback receiver


_PAGE = ("<!doctype html><meta charset=utf-8><title>vaultline</title>"
         "<body style='font-family:sans-serif'><h3>{}</h3><p>You can close this tab.</p>")


class LoopbackReceiver:
    """One-shot HTTP receiver for the OAuth redirect on 127.0.0.1 (asyncio streams, no threads).

    The first request to `path` decides the outcome: a code with the expected state, or an error
    (the provider's `error`, a missing code, or a state mismatch, which aborts the login since it
    may be a forged callback). Other paths (favicon...) get 404 and are ignored."""

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1", path: str = "/callback",
                 redirect_host: str | None = None) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._redirect_host = redirect_host or host
        self._server: asyncio.AbstractServer | None = None
        self._result: asyncio.Future[dict[str, str]] | None = None

    async def start(self) -> "LoopbackReceiver":
        self._result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "LoopbackReceiver":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def redirect_uri(self) -> str:
        return f"http://{self._redirect_host}:{self._port}{self._path}"

    async def wait_for_code(self, state: str, timeout: float = 300.0) -> str:
        assert self._result is not None, "call start() first"
        try:
            query = await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError:
            raise OAuthError(f"no OAuth callback on {self.redirect_uri} within {timeout:.0f}s") from None
        if "error" in query:
            raise OAuthError(f"authorization refused: {query['error']}: {query.get('error_description', '')}".rstrip(": "))
        if not hmac.compare_digest(query.get("state", ""), state):
            raise OAuthStateMismatch("OAuth callback state does not match: login aborted")
        code = query.get("code")
        if not code:
            raise OAuthError("OAuth callback without code")
        return code

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            target = parts[1] if len(parts) >= 2 else "/"
            url = urlsplit(target)
            if url.path != self._path:
                await self._reply(writer, 404, "Not found")
                return
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            assert self._result is not None
            if self._result.done():
                await self._reply(writer, 410, "This login callback was already used.")
                return
            self._result.set_result(query)
            ok = "code" in query and "error" not in query
            await self._reply(writer, 200 if ok else 400,
                              "Login received by vaultline." if ok else "Login failed: see the terminal.")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
        body = _PAGE.format(html.escape(text)).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 410: "Gone"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()


async def login_interactive(oauth: OAuthClient, *, on_url: Callable[[str], Any], port: int = 0,
                            scopes: Sequence[str] = DEFAULT_SCOPES, timeout: float = 300.0,
                            path: str = "/callback", redirect_host: str | None = None) -> TokenSet:
    """Whole interactive login: start the receiver, hand the authorize URL to `on_url` (print it,
    open a browser), wait for the callback, check state, exchange the code with the PKCE verifier."""
    pkce = Pkce.generate()
    state = new_state()
    async with LoopbackReceiver(port, path=path, redirect_host=redirect_host) as rx:
        url = oauth.authorize_url(redirect_uri=rx.redirect_uri, state=state,
                                  code_challenge=pkce.challenge, scopes=scopes)
        res = on_url(url)
        if asyncio.iscoroutine(res):
            await res
        code = await rx.wait_for_code(state, timeout)
    return await oauth.exchange_code(code, redirect_uri=rx.redirect_uri, code_verifier=pkce.verifier)
