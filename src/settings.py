"""Configuration: environment (prefix VAULTLINE_) plus an optional vaultline.toml for
per-creator settings. A creator not listed in the file gets the defaults."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vaultline.events import SLUG_RE, CropMode, Vault


class CreatorConfig(BaseModel):
    """Per-persona settings. Everything has a default so an unknown creator just works."""

    slug: str
    crop_mode: CropMode = "no_face"
    comfy_output_dirs: list[Path] = Field(default_factory=list)
    # Default decision for a file a person moves into 4_approved/<vault>/ by hand.
    default_vault: Vault = "feed"
    default_ppv_price_cents: int = 999
    vault_folders: dict[str, str] = Field(default_factory=dict)

    def vault_folder(self, vault: str) -> str:
        return self.vault_folders.get(vault) or f"{self.slug}-{vault}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAULTLINE_", extra="ignore")

    data_dir: Path = Path("./vaultline-data")
    config_file: Path | None = None  # default: ./vaultline.toml when it exists

    # External services. Unset -> `vaultline run` starts embedded ones under data_dir.
    nats_url: str | None = None
    database_url: str | None = None

    default_creator: str = "default"

    admin_host: str = "127.0.0.1"
    # The ComfyUI node posts to 127.0.0.1:8765 by default. When the port is taken, `run`
    # falls back to a free one (written to runtime.json); 0 always picks a free one.
    admin_port: int = 8765
    admin_token: str | None = None

    # Storage: local folders under data_dir/library unless an S3 bucket is set.
    storage_root: Path | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    # Folders the HTTP ingest hook may read a `path` from (besides every creator's
    # comfy_output_dirs). Anything outside is refused.
    ingest_roots: list[Path] = Field(default_factory=list)

    # /metrics (Prometheus): on the admin app, and on each `vaultline worker` at
    # metrics_host:metrics_port (a taken port falls back to a free one; 0 always picks one).
    # Needs the admin token as a bearer header unless metrics_public (private network scrape).
    metrics_public: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464

    log_level: str = "INFO"
    log_file: Path | None = None
    # auto: readable lines on a terminal, JSON lines otherwise (and always in a log file).
    log_format: Literal["auto", "json", "console"] = "auto"

    # Consumer tuning (applied by `vaultline provision`).
    max_deliver: int = 8
    retry_base_delay: float = 0.5
    retry_max_delay: float = 60.0
    # Stream replicas: 1 embedded, 3 in the cluster deployment.
    stream_replicas: int = 1

    @field_validator("default_creator")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError(f"default_creator must be a slug: {v!r}")
        return v

    # ------------------------------------------------------------------ derived

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    @property
    def library_root(self) -> Path:
        return self.storage_root or (self.data_dir / "library")

    def _file_config(self) -> dict[str, Any]:
        path = self.config_file or Path("vaultline.toml")
        if not path.exists():
            if self.config_file is not None:
                raise FileNotFoundError(f"config file {path} does not exist")
            return {}
        with path.open("rb") as f:
            return tomllib.load(f)

    def creators(self) -> dict[str, CreatorConfig]:
        """Creators listed in vaultline.toml ([creators.<slug>] tables) plus the default one."""
        data = self._file_config()
        out: dict[str, CreatorConfig] = {}
        for slug, table in (data.get("creators") or {}).items():
            out[slug] = CreatorConfig(slug=slug, **table)
        default = data.get("default_creator") or self.default_creator
        out.setdefault(default, CreatorConfig(slug=default))
        if not any(c.comfy_output_dirs for c in out.values()):
            # Nothing configured: the default creator watches DIR/inbox, so `make run` and a
            # folder to drop images into (or to point ComfyUI's output at) is all it takes.
            out[default] = out[default].model_copy(update={"comfy_output_dirs": [self.inbox_dir]})
        return out

    @property
    def inbox_dir(self) -> Path:
        return self.data_dir / "inbox"

    def creator(self, slug: str) -> CreatorConfig:
        if not SLUG_RE.match(slug):
            raise ValueError(f"creator must be a slug ([a-z0-9_-]): {slug!r}")
        return self.creators().get(slug) or CreatorConfig(slug=slug)

    def allowed_ingest_roots(self) -> list[Path]:
        roots = list(self.ingest_roots)
        for c in self.creators().values():
            roots.extend(c.comfy_output_dirs)
        return [r.expanduser().resolve() for r in roots]

    def resolved(self) -> "Settings":
        """Fill nats_url/database_url from DIR/runtime.json of a running stack when unset,
        so every CLI command finds the stack `vaultline run` started."""
        if self.nats_url and self.database_url:
            return self
        info = read_runtime(self.data_dir)
        if not info:
            return self
        return self.model_copy(
            update={
                "nats_url": self.nats_url or info.get("nats_url"),
                "database_url": self.database_url or info.get("database_url"),
            }
        )


def read_runtime(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / "runtime.json"
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        return None  # stale file of a stack that died
    return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
