"""Transport retries: one policy object per remote service, run by tenacity.

A policy says how often and how patiently a call to one service is repeated (attempts,
exponential backoff with jitter, a cap). What is *safe* to repeat is the caller's decision (a
POST that may have reached the server is not), passed as `retry_if`. Rate limiting is not a
retry: the Fanvue client's token bucket (`pause_for`) does that waiting for every caller.

    retrying = FANVUE.retrying(retry_if=lambda e: isinstance(e, ServerError), sleep=sleep)
    response = await retrying(send_once)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

Sleep = Callable[[float], Awaitable[Any]]


class _JitteredBackoff(wait_base):
    """base * 2^(n-1), capped, times a jitter factor in [50%, 100%] so parallel workers do not
    retry in step. An exception carrying `retry_after` (seconds the server asked for) wins."""

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        self.base, self.cap, self.rng = base, cap, rng

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = getattr(exc, "retry_after", None)
        if isinstance(asked, (int, float)) and asked >= 0:
            return float(asked)
        return backoff(retry_state.attempt_number, self.base, self.cap, self.rng)


def backoff(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """The wait after the `failures`-th failure (1-based)."""
    return min(cap, base * 2 ** (failures - 1)) * (0.5 + rng.random() / 2)


@dataclass(frozen=True)
class RetryPolicy:
    """How one remote service is retried. Callers may tighten `max_attempts` per call site."""

    service: str
    max_attempts: int
    backoff_base: float
    backoff_cap: float

    def with_attempts(self, max_attempts: int) -> "RetryPolicy":
        return replace(self, max_attempts=max(1, max_attempts))

    def retrying(self, *, retry_if: Callable[[BaseException], bool], sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None) -> AsyncRetrying:
        """A tenacity runner: repeats while `retry_if(exc)` and attempts remain, then re-raises
        the last exception unchanged (callers see their own typed errors, never RetryError)."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_JitteredBackoff(self.backoff_base, self.backoff_cap, rng or random.Random()),
            retry=retry_if_exception(retry_if),
            sleep=sleep,
            reraise=True,
        )


# Fanvue: the API, its OAuth token endpoint and the presigned S3 part URLs it hands out.
FANVUE = RetryPolicy("fanvue", max_attempts=4, backoff_base=0.5, backoff_cap=30.0)

# Ollama on this machine: a refused connection or a 5xx is usually a restart or a model being
# loaded. Three quick tries, then the suggestion waits (pending) for the bus's backoff.
OLLAMA = RetryPolicy("ollama", max_attempts=3, backoff_base=0.5, backoff_cap=4.0)
