"""Drafter port on a local Ollama, through the official `ollama` client (AsyncClient).

Structured output: `format` is the JSON schema of domain.chat.ModelAnswer and the answer is
validated with that model. An answer that does not validate is asked for once more (with the
error), then ModelAnswerInvalid. Transport failures (refused, timeout, 5xx, 429, model not
pulled) are retried quickly by the OLLAMA policy, then raised as ModelUnavailable (a
TransientError: the bus redelivers later)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import structlog
from ollama import AsyncClient, ResponseError
from pydantic import ValidationError

from vaultline.adapters.retry_policies import OLLAMA, RetryPolicy
from vaultline.domain.chat import (
    ModelAnswer,
    ModelAnswerInvalid,
    ModelUnavailable,
    answer_schema,
    retry_instruction,
)

log = structlog.get_logger("vaultline.ollama")


class _Transient(Exception):
    """One failed try worth another (internal to the retry loop)."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient)


def _classify(exc: BaseException, model: str) -> Exception:
    if isinstance(exc, ResponseError):
        if exc.status_code == 404:
            return _Transient(f"model {model!r} is not available on the Ollama server (ollama pull {model}): {exc.error}")
        if exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == -1:
            return _Transient(f"Ollama answered {exc.status_code}: {exc.error}")
        return ModelAnswerInvalid(f"Ollama refused the request ({exc.status_code}): {exc.error}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException)):
        return _Transient("Ollama too slow: no complete answer within the timeout")
    if isinstance(exc, (ConnectionError, httpx.TransportError, OSError)):
        return _Transient(f"Ollama unreachable: {exc or type(exc).__name__}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


class OllamaDrafter:
    """`draft(model, messages)` -> ModelAnswer. One instance per process (one HTTP pool)."""

    def __init__(
        self,
        host: str = "http://127.0.0.1:11434",
        *,
        timeout: float = 120.0,
        stream: bool = True,
        policy: RetryPolicy = OLLAMA,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.timeout = timeout
        self.stream = stream
        self.policy = policy
        self.options = options if options is not None else {"temperature": 0.7}
        # httpx timeouts bound each read; `timeout` bounds the whole call (asyncio.wait_for).
        self._client = AsyncClient(host=host, timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))

    async def close(self) -> None:
        await self._client.close()

    async def models(self) -> list[str]:
        """Model names on the server (/api/tags); raises ModelUnavailable when unreachable."""
        try:
            listing = await asyncio.wait_for(self._client.list(), self.timeout)
        except Exception as e:
            raise ModelUnavailable(str(_classify(e, ""))) from e
        return [m.model for m in listing.models if m.model]

    async def _once(self, model: str, messages: list[dict[str, str]]) -> str:
        if not self.stream:
            resp = await self._client.chat(model=model, messages=messages, format=answer_schema(),
                                           options=self.options, stream=False)  # fmt: skip
            return resp.message.content or ""
        parts: list[str] = []
        stream = await self._client.chat(model=model, messages=messages, format=answer_schema(),
                                         options=self.options, stream=True)  # fmt: skip
        async for chunk in stream:
            parts.append(chunk.message.content or "")  # streaming: a slow model never hits a read timeout
        return "".join(parts)

    async def _chat(self, model: str, messages: list[dict[str, str]]) -> str:
        try:
            async for attempt in self.policy.retrying(retry_if=_is_transient):
                with attempt:
                    try:
                        return await asyncio.wait_for(self._once(model, messages), self.timeout)
                    except Exception as e:
                        raise _classify(e, model) from e
        except _Transient as e:
            raise ModelUnavailable(str(e)) from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def draft(self, model: str, messages: list[dict[str, str]]) -> ModelAnswer:
        convo = list(messages)
        error = ""
        for attempt in (1, 2):
            content = await self._chat(model, convo)
            try:
                return ModelAnswer.model_validate_json(content)
            except ValidationError as e:
                error = _short(e)
                log.warning("malformed model answer", model=model, attempt=attempt, error=error)
                convo = [*messages, {"role": "assistant", "content": content[:2000]}, retry_instruction(error)]
        raise ModelAnswerInvalid(f"the model's answer was not valid twice: {error}")


def _short(e: ValidationError) -> str:
    errs = e.errors()
    if not errs:
        return str(e)[:300]
    first = errs[0]
    loc = ".".join(str(x) for x in first.get("loc", ())) or "answer"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {first.get('msg')}{more}"[:300]
