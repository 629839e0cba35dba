"""Typed errors of the Fanvue adapter.

`transient` tells a handler whether to retry later (nak with delay) or give up (reject → DLQ):
rate limits, 5xx and network failures are transient; auth, scope, validation, not-found are not.
"""

from __future__ import annotations

from typing import Any


class FanvueError(Exception):
    """Base class. `status` is the HTTP status (None for network failures), `message` the text
    Fanvue gave (from `errors[]`, `message` or `error`, in that order), `body` the parsed body."""

    transient: bool = False

    def __init__(self, message: str, *, status: int | None = None, body: Any = None,
                 method: str | None = None, url: str | None = None) -> None:
        self.message = message
        self.status = status
        self.body = body
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method and url else ""
        prefix = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{prefix}{message}{where}")


class AuthError(FanvueError):
    """401 that survived one token refresh, or no usable token at all."""


class NotLoggedInError(AuthError):
    """No tokens stored for this creator: run `vaultline fanvue login --creator C`."""


class InvalidGrantError(AuthError):
    """The token endpoint rejected the refresh token (already used, revoked or expired).
    Refresh tokens rotate and are single use, so the only way out is a new login."""


class ScopeError(FanvueError):
    """403: the token lacks a scope (the user must re-authorize with it ticked)."""


class ValidationError(FanvueError):
    """400/422: Fanvue rejected the request; `errors` holds its individual messages."""

    def __init__(self, message: str, *, errors: list[str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.errors = errors or []


class NotFound(FanvueError):
    """404."""


class Conflict(FanvueError):
    """409 (for example a vault folder name that already exists)."""


class ApiVersionError(FanvueError):
    """410: the API version header names a sunset version; `next_version` says which to use."""

    def __init__(self, message: str, *, next_version: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.next_version = next_version


class RateLimited(FanvueError):
    """429 that could not be waited out within the client's limits. `retry_after` is the wait in
    seconds Fanvue asked for (None when unknown): a handler can nak with that delay."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(FanvueError):
    """5xx after the retries were used up (or on a request that is unsafe to repeat)."""

    transient = True


class TransportError(FanvueError):
    """Timeout or connection failure after the retries were used up. `ambiguous` is True when
    the request may have reached Fanvue (read timeout) so repeating it could duplicate an effect."""

    transient = True

    def __init__(self, message: str, *, ambiguous: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.ambiguous = ambiguous


class UnexpectedResponse(FanvueError):
    """A 2xx whose body does not have the fields the client needs (API drift)."""


class PartUploadError(FanvueError):
    """The presigned S3 PUT of one part failed (no ETag, 4xx such as an expired URL, ...)."""


class MediaProcessingError(FanvueError):
    """The media went to status `error` after the upload was completed. Permanent."""

    def __init__(self, message: str, *, media_uuid: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.media_uuid = media_uuid


class MediaNotReady(FanvueError):
    """The media did not become ready before the deadline. Transient: poll again later."""

    transient = True

    def __init__(self, message: str, *, media_uuid: str, last_status: str | None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.media_uuid = media_uuid
        self.last_status = last_status


class OAuthError(FanvueError):
    """The authorization or token endpoint refused (error, error_description in `message`)."""


class OAuthStateMismatch(OAuthError):
    """The callback's `state` differs from the one we sent: possible CSRF, the login is aborted."""


class SecretKeyError(RuntimeError):
    """The token encryption key is missing, malformed or stored with unsafe permissions."""


class TokenDecryptError(RuntimeError):
    """Stored ciphertext cannot be decrypted with the configured key (wrong key, tampering)."""
