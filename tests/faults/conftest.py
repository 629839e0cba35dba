"""Fixtures of the fault tests (servers of their own come from tests/conftest.py: `fresh_nats`,
`pg_data_dir`; the session's PostgreSQL through `migrated_db` / `pool`)."""

from __future__ import annotations

import logging

import pytest
import structlog

from vaultline.entrypoints.logs import configure_logging


@pytest.fixture(autouse=True)
def operator_logging():
    """This process plays `vaultline run` at a terminal: its logging, as configure_logging sets
    it up (console renderer), not structlog's unconfigured default, whose rich tracebacks take
    seconds each and would starve the event loop while a fault makes every delivery fail.
    Restored afterwards for the rest of the session."""
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO", fmt="console")
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
