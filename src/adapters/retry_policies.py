"""Transport retry policies (tenacity) for the services vaultline calls, one object each.

A policy retries quick, in-process, for blips (a refused connection while a server restarts,
a 503); anything longer is the bus's job: the handler raises TransientError and JetStream
redelivers with backoff."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter


@dataclass(frozen=True)
class RetryPolicy:
    name: str
    attempts: int  # total tries, the first included
    initial: float  # seconds before the second try, doubled each time
    max_wait: float
    jitter: float = 0.2

    def retrying(self, retry_on: Callable[[BaseException], bool]) -> AsyncRetrying:
        """`async for attempt in policy.retrying(is_transient): with attempt: ...`; the last
        error is re-raised as itself."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=self.initial, max=self.max_wait, jitter=self.jitter),
            retry=retry_if_exception(retry_on),
            reraise=True,
        )


# Ollama on the same machine: a refused connection or a 5xx is usually a restart or a model
# being loaded. Three quick tries, then the suggestion waits (pending) for the bus's backoff.
OLLAMA = RetryPolicy("ollama", attempts=3, initial=0.5, max_wait=4.0)
