"""Which failures are worth retrying, and how long to wait. Pure."""

from __future__ import annotations

from pydantic import ValidationError

from vaultline.events import InvalidEvent


class PermanentError(Exception):
    """Retrying cannot help (bad input, a rule violated): the message goes to the dead letters."""


class TransientError(Exception):
    """Worth retrying later (a service is down, a rate limit, a lock timeout)."""


def is_permanent(exc: BaseException) -> bool:
    # Validation errors are permanent: the same bytes will fail the same way next time.
    return isinstance(exc, (PermanentError, InvalidEvent, ValidationError, UnicodeDecodeError))


def backoff_delay(delivery: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Delay before the next delivery after `delivery` failed (1-based): base, 2*base, 4*base... capped."""
    if delivery < 1:
        delivery = 1
    return min(cap, base * (2 ** (delivery - 1)))
