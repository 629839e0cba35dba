"""What the benchmark scripts share: their command line (with --json), quiet logging, and fresh
embedded servers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


def bench_args(doc: str | None, options: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """Parse the command line: `options` (flag -> add_argument keywords) and --json; then send
    vaultline's logs to stderr at WARNING, so stdout keeps the table."""
    from vaultline.entrypoints.logs import configure_logging

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, kwargs in options.items():
        ap.add_argument(flag, **kwargs)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    configure_logging("WARNING")
    return args


@contextlib.asynccontextmanager
async def embedded_stack(root: Path, data_dir: Path | None = None) -> AsyncIterator[tuple[Any, Any, Any]]:
    """A fresh embedded nats-server and PostgreSQL under `root`, migrated: (settings with both
    URLs and `data_dir` (default `root`), the nats server, the PostgreSQL server). Both are
    stopped on exit, also when one failed to start."""
    from vaultline.adapters.db import migrate
    from vaultline.adapters.embedded.nats import EmbeddedNats
    from vaultline.adapters.embedded.postgres import EmbeddedPostgres
    from vaultline.settings import Settings

    ns, pg = EmbeddedNats(root / "nats"), EmbeddedPostgres(root / "pg")
    try:
        nats_url, db_url = await asyncio.to_thread(ns.start), await asyncio.to_thread(pg.start)
        await migrate(db_url)
        yield Settings(nats_url=nats_url, database_url=db_url, data_dir=data_dir or root), ns, pg
    finally:
        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(ns.stop)
