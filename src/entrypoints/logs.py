"""Logging for every command: structlog's console renderer for a person at a terminal, JSON
lines otherwise (pipes, services, `--log-file`); VAULTLINE_LOG_FORMAT=json|console overrides.
Also keeps MediaPipe's native start-up chatter (TF-Lite, absl) out of the operator's stderr."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import structlog

FORMATS = ("auto", "json", "console")


def _renderer(fmt: str, stream: Any) -> Any:
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    if fmt == "console":
        # Plain tracebacks: structlog's default draws them with rich (locals included), which
        # blocks the event loop ~3.5 s per logged exception on a busy 2-core machine; during a
        # PostgreSQL outage every failed delivery logs one and the process stops making progress.
        return structlog.dev.ConsoleRenderer(
            colors=getattr(stream, "isatty", lambda: False)(), exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.processors.JSONRenderer()


def configure_logging(level: str = "INFO", file: Path | None = None, fmt: str | None = None) -> None:
    """`fmt`: auto (console on a TTY, JSON otherwise), json or console; a log file is JSON
    unless console is asked for explicitly."""
    fmt = (fmt or os.environ.get("VAULTLINE_LOG_FORMAT") or "auto").lower()
    if fmt not in FORMATS:
        fmt = "auto"
    if file:
        file.parent.mkdir(parents=True, exist_ok=True)
    stream = open(file, "a", buffering=1) if file else sys.stderr  # noqa: SIM115 - lives as long as the process
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer = _renderer(fmt, stream)
    processors = [
        structlog.contextvars.merge_contextvars,  # event_id, correlation_id, subject, handler
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if isinstance(renderer, structlog.processors.JSONRenderer) else _noop,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (uvicorn, asyncio) go to the same place, rendered alike.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # httpx logs every request URL at INFO: presigned upload URLs carry their signature.
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _noop(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return event


# Native libraries under MediaPipe write straight to file descriptor 2 (not through Python):
# TF-Lite's "INFO: Created TensorFlow Lite XNNPACK delegate", absl's pre-init warning and its
# I/W lines ("W0000 00:00:... inference_feedback_manager.cc ..."). Errors (E/F) pass.
NATIVE_NOISE = re.compile(
    rb"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog"
    rb"|[IW]\d{4} \d\d:\d\d:\d\d)"
)
_filter_installed = False


def filter_native_stderr() -> None:
    """Route fd 2 through a pipe and drop NATIVE_NOISE lines; everything else is passed on.
    Idempotent; a no-op where fd 2 cannot be replaced."""
    global _filter_installed
    if _filter_installed:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except OSError:
        return
    _filter_installed = True

    def pump() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as src:
            pending = b""
            while chunk := src.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                keep = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
                if keep:
                    os.write(real, keep)
            if pending and not NATIVE_NOISE.match(pending):
                os.write(real, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def drain() -> None:
        # At exit: hand fd 2 back to the real stderr, which closes the pipe's last writer
        # (child processes aside), and let the pump pass on what is left.
        try:
            sys.stderr.flush()
            os.dup2(real, 2)
        except (OSError, ValueError):
            return
        thread.join(timeout=1.0)

    atexit.register(drain)
