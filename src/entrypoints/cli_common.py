"""What every CLI module shares: consoles, the common options, and finding the running stack."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vaultline.settings import Settings

out = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", envvar="VAULTLINE_DATA_DIR", help="Data directory [default: ./vaultline-data]")
JsonOut = typer.Option(False, "--json", help="Machine-readable output.")


def settings_for(data_dir: Path | None) -> Settings:
    s = Settings()
    if data_dir is not None:
        s = s.model_copy(update={"data_dir": data_dir})
    return s


def connected(data_dir: Path | None, *, need_db: bool = False, need_nats: bool = True) -> Settings:
    """Settings with the URLs of a running stack, or a clear exit 2 when there is none."""
    s = settings_for(data_dir).resolved()
    if (need_nats and not s.nats_url) or (need_db and not s.database_url):
        err.print(
            f"[red]no running vaultline found[/red]: start one with `vaultline run --data-dir {s.data_dir}` "
            "or set VAULTLINE_NATS_URL / VAULTLINE_DATABASE_URL"
        )
        raise typer.Exit(2)
    return s


def with_pool(s: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(pool)` against the stack's database; exit 2 with a clear message when it is
    unreachable."""
    import asyncpg

    from vaultline.adapters.db import create_pool

    async def main() -> Any:
        try:
            pool = await create_pool(s.database_url, min_size=1, max_size=2)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as e:
            err.print(f"[red]cannot reach the stack's database[/red] ({e}); is `vaultline run` still running?")
            raise typer.Exit(2) from None
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
