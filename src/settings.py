"""Configuration: environment (prefix VAULTLINE_) plus an optional vaultline.toml for
per-creator settings. A creator not listed in the file gets the defaults."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vaultline.adapters.fanvue import DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL
from vaultline.domain.chat import Persona
from vaultline.domain.sends import DEFAULT_TIERS, PriceTier
from vaultline.events import SLUG_RE, CropMode, Vault


@dataclass(frozen=True)
class FanvueConfig:
    """The Fanvue app and API this installation talks to (`Settings.fanvue`)."""

    base_url: str = DEFAULT_BASE_URL
    path_prefix: str = ""  # e.g. /v1 (research §1.1: unclear, so configurable)
    client_id: str | None = None
    client_secret: str | None = None
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    token_url: str = DEFAULT_TOKEN_URL
    webhook_secret: str | None = None
    sync_interval_s: float = 300.0
    earnings_lookback_days: int = 30


class PriceTierConfig(BaseModel):
    min_spend_cents: int = Field(ge=0)
    price_cents: int = Field(ge=0)


# Placeholders of deploy/.env.example and documentation examples: never accepted as secrets.
PLACEHOLDER_SECRET = re.compile(r"change[-_ ]?me|^(secret|password|token|admin|example|x+|\.\.\.|<.*>)$", re.I)


MIN_TOKEN_LENGTH = 32


def is_placeholder(secret: str) -> bool:
    return bool(PLACEHOLDER_SECRET.search(secret.strip()))


def token_problem(token: str) -> str | None:
    """Why `token` must not guard the admin app (None when it may): empty, a placeholder or
    shorter than MIN_TOKEN_LENGTH characters."""
    token = token.strip()
    if not token:
        return "is empty"
    if is_placeholder(token):
        return f"is the placeholder {token!r} (from deploy/.env.example?)"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is {len(token)} characters long; at least {MIN_TOKEN_LENGTH} random ones are needed"
    return None


def _url_passwords(url: str) -> list[str]:
    """The passwords in a URL (or a comma-separated list of them, as for NATS)."""
    found = []
    for part in url.split(","):
        try:
            password = urlsplit(part.strip()).password
        except ValueError:
            continue
        if password:
            found.append(password)
    return found


class CreatorConfig(BaseModel):
    """Per-persona settings. Everything has a default so an unknown creator just works."""

    slug: str
    crop_mode: CropMode = "no_face"
    comfy_output_dirs: list[Path] = Field(default_factory=list)
    # Default decision for a file a person moves into 4_approved/<vault>/ by hand.
    default_vault: Vault = "feed"
    default_ppv_price_cents: int = 999
    vault_folders: dict[str, str] = Field(default_factory=dict)
    # Fan chat: who the drafts speak as, which Ollama model drafts them (default:
    # VAULTLINE_OLLAMA_MODEL), and replies the inbox offers while the model is unavailable.
    persona: Persona = Field(default_factory=Persona)
    chat_model: str | None = None
    templates: list[str] = Field(default_factory=list)

    # PPV price by what a fan has spent so far (suggest-ppv):
    # [[creators.x.ppv_price_tiers]] tables of {min_spend_cents, price_cents}.
    ppv_price_tiers: list[PriceTierConfig] = Field(
        default_factory=lambda: [PriceTierConfig(min_spend_cents=t.min_spend_cents, price_cents=t.price_cents) for t in DEFAULT_TIERS]
    )

    def price_tiers(self) -> list[PriceTier]:
        return [PriceTier(t.min_spend_cents, t.price_cents) for t in self.ppv_price_tiers]

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
    # The ComfyUI node's token: POST /api/ingest only. Unset: DIR/ingest-token (created 0600).
    ingest_token: str | None = None
    # A non-loopback admin_host needs TLS (both files, PEM) or admin_insecure_bind (`run
    # --insecure-bind`), e.g. behind a TLS proxy or in a container published on loopback.
    admin_tls_cert: Path | None = None
    admin_tls_key: Path | None = None
    admin_insecure_bind: bool = False
    # Host names the admin app answers to besides loopback names and admin_host (Host header check).
    admin_trusted_hosts: list[str] = Field(default_factory=list)
    # Largest image the ingest hook accepts (bytes); bigger uploads get 413 and store nothing.
    ingest_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)

    # Storage: local folders under data_dir/library unless an S3 bucket is set.
    storage_root: Path | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    # Folders the HTTP ingest hook may read a `path` from (besides every creator's
    # comfy_output_dirs). Anything outside is refused.
    ingest_roots: list[Path] = Field(default_factory=list)

    # A file in a watched ComfyUI folder that is still not a complete image this many seconds
    # after its last change moves to <creator>/rejected/ with a .reason.txt (a "problem").
    watch_reject_after_s: float = 30.0

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

    # Fanvue (see FanvueConfig). Empty values mean "the default".
    fanvue_base_url: str = DEFAULT_BASE_URL
    fanvue_path_prefix: str = ""
    fanvue_client_id: str | None = None
    fanvue_client_secret: str | None = None
    fanvue_auth_url: str = DEFAULT_AUTHORIZE_URL
    fanvue_token_url: str = DEFAULT_TOKEN_URL
    # The app's webhook signing secret (Developer Area -> app -> Events -> View Signing Secret).
    fanvue_webhook_secret: str | None = None
    # The sync loop of `vaultline run` (chats, purchases, earnings) every N seconds; 0 = off.
    fanvue_sync_interval: float = Field(default=300.0, ge=0)
    # How far back the first earnings import of a creator reads.
    fanvue_earnings_lookback_days: int = Field(default=30, ge=1)

    @field_validator("fanvue_base_url", "fanvue_auth_url", "fanvue_token_url", mode="before")
    @classmethod
    def _default_when_empty(cls, v: Any, info: Any) -> Any:
        if v in (None, ""):
            return cls.model_fields[info.field_name].default
        return v

    @field_validator("fanvue_client_id", "fanvue_client_secret", "fanvue_webhook_secret", mode="before")
    @classmethod
    def _none_when_empty(cls, v: Any) -> Any:
        return None if v == "" else v

    # Fan chat drafts: a local Ollama. The timeout bounds one model call (seconds).
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_model: str = "llama3.2"
    ollama_timeout: float = 120.0
    chat_history: int = 20  # last N messages of a conversation the model sees

    @field_validator("default_creator")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError(f"default_creator must be a slug: {v!r}")
        return v

    @field_validator("admin_token", "ingest_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> "Settings":
        """deploy/.env.example's `change-me` values must not reach a running service, and a
        configured token must be long enough not to be guessed."""
        for name, token in (("VAULTLINE_ADMIN_TOKEN", self.admin_token), ("VAULTLINE_INGEST_TOKEN", self.ingest_token)):
            problem = token_problem(token) if token is not None else None
            if problem:
                raise ValueError(f"{name} {problem}: set a random one (e.g. `openssl rand -hex 32`)")
        candidates: list[tuple[str, str]] = []
        for name, url in (("VAULTLINE_NATS_URL", self.nats_url), ("VAULTLINE_DATABASE_URL", self.database_url)):
            candidates += [(f"the password in {name}", p) for p in _url_passwords(url or "")]
        if self.fanvue_webhook_secret:
            candidates.append(("VAULTLINE_FANVUE_WEBHOOK_SECRET", self.fanvue_webhook_secret))
        for name, value in candidates:
            if is_placeholder(value):
                raise ValueError(
                    f"{name} is the placeholder {value!r} (from deploy/.env.example?): set a real, random secret"
                )
        if (self.admin_tls_cert is None) != (self.admin_tls_key is None):
            raise ValueError("set both VAULTLINE_ADMIN_TLS_CERT and VAULTLINE_ADMIN_TLS_KEY, or neither")
        return self

    # ------------------------------------------------------------------ derived

    @property
    def fanvue(self) -> FanvueConfig:
        return FanvueConfig(
            base_url=self.fanvue_base_url,
            path_prefix=self.fanvue_path_prefix,
            client_id=self.fanvue_client_id,
            client_secret=self.fanvue_client_secret,
            authorize_url=self.fanvue_auth_url,
            token_url=self.fanvue_token_url,
            webhook_secret=self.fanvue_webhook_secret,
            sync_interval_s=self.fanvue_sync_interval,
            earnings_lookback_days=self.fanvue_earnings_lookback_days,
        )

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
        base = (self.config_file or Path("vaultline.toml")).parent
        for slug, table in (data.get("creators") or {}).items():
            table = dict(table)
            if isinstance(table.get("persona"), dict):
                table["persona"] = _load_persona(table["persona"], base, slug)
            out[slug] = CreatorConfig(slug=slug, **table)
        default = self.configured_default_creator()
        out.setdefault(default, CreatorConfig(slug=default))
        if not any(c.comfy_output_dirs for c in out.values()):
            # Nothing configured: the default creator watches DIR/inbox, so `make run` and a
            # folder to drop images into (or to point ComfyUI's output at) is all it takes.
            out[default] = out[default].model_copy(update={"comfy_output_dirs": [self.inbox_dir]})
        return out

    def configured_default_creator(self) -> str:
        """The default creator: vaultline.toml's `default_creator`, else VAULTLINE_DEFAULT_CREATOR."""
        return self._file_config().get("default_creator") or self.default_creator

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


def _load_persona(table: dict[str, Any], base: Path, slug: str) -> dict[str, Any]:
    """`[creators.<slug>.persona]` may point to a TOML file with the persona's keys; keys set
    in the table itself win over the file's."""
    ref = table.get("file")
    if not ref:
        return table
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = base / path
    try:
        with path.open("rb") as f:
            loaded = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"creator {slug}: persona file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"creator {slug}: persona file {path} is not valid TOML: {e}") from None
    loaded = loaded.get("persona", loaded)
    return {**loaded, **table, "file": str(path)}


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
