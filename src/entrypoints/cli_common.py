"""What every CLI module shares: consoles, the common options, and finding the running stack."""

from __future__ import annotations

from pathlib import Path

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
