"""`vaultline run`: the whole pipeline in one process on a laptop.

Starts nats-server and PostgreSQL from their wheels when no external URLs are configured,
migrates, provisions, runs every handler, the outbox relay and the admin app, writes
DIR/runtime.json and on SIGINT/SIGTERM stops in reverse order: consumers first (in-flight
work finishes and is acked), then the servers it started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import structlog

from vaultline.adapters.db import migrate
from vaultline.adapters.embedded.nats import EmbeddedNats
from vaultline.adapters.embedded.postgres import EmbeddedPostgres
from vaultline.bootstrap import HANDLERS, Runtime, background_tasks
from vaultline.entrypoints.admin import AdminContext, AdminSecurity, AdminServer, Services, admin_security, create_app, is_loopback
from vaultline.entrypoints.datadir import DataDirLock, ensure_data_dir, write_runtime_json
from vaultline.entrypoints.metrics_http import with_metrics
from vaultline.settings import Settings

log = structlog.get_logger("vaultline.stack")

def _say(msg: str) -> None:
    """Human-facing lines go to stderr beside the JSON logs, unmistakable for an operator."""
    print(msg, file=sys.stderr, flush=True)


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.absolute()
        self.nats: EmbeddedNats | None = None
        self.pg: EmbeddedPostgres | None = None
        self.runtime: Runtime | None = None
        self.admin: AdminServer | None = None
        self.security: AdminSecurity | None = None
        self.stop_event = asyncio.Event()

    async def run(self) -> None:
        ensure_data_dir(self.data_dir)
        lock = DataDirLock(self.data_dir).acquire()  # raises AlreadyRunning with the holder's pid
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_event.set)
        try:
            await self._start()
            await self.stop_event.wait()
            _say("vaultline: stopping (consumers first, then the servers it started)")
        finally:
            await self._stop()
            lock.release()

    async def _start(self) -> None:
        s = self.settings
        # A weak token or an unsafe bind stops the start before any server runs.
        security = self.security = admin_security(s)
        nats_url, db_url = s.nats_url, s.database_url
        if not nats_url:
            self.nats = EmbeddedNats(self.data_dir / "nats")
            nats_url = await asyncio.to_thread(self.nats.start)
        if not db_url:
            self.pg = EmbeddedPostgres(self.data_dir / "postgres")
            db_url = await asyncio.to_thread(self.pg.start)
        s = self.settings = s.model_copy(update={"nats_url": nats_url, "database_url": db_url})
        applied = await migrate(db_url)
        if applied:
            log.info("migrations applied", versions=applied)

        for creator in s.creators().values():
            for folder in creator.comfy_output_dirs:
                folder.mkdir(parents=True, exist_ok=True)
        self.runtime = Runtime(s, list(HANDLERS))
        await self.runtime.start()
        for coro in background_tasks(self.runtime):
            self.runtime.add_task(coro)

        ctx = AdminContext(
            token=security.token,
            ingest_token=security.ingest_token,
            trusted_hosts=security.trusted_hosts,
            services=Services.from_runtime(self.runtime),
            ready_checks=[self._nats_ok, self._db_ok],
        )
        app = with_metrics(create_app(ctx), s, security.token, self.runtime)
        self.admin = AdminServer(app, host=s.admin_host, port=s.admin_port, tls=security.tls, fallback=True)
        admin_task = self.runtime.add_task(self.admin.serve())
        while not self.admin.started:
            if admin_task.done():
                admin_task.result()  # raises the bind error
                raise RuntimeError("admin server exited during start")
            await asyncio.sleep(0.02)
        if self.admin.fell_back:
            log.warning("admin port taken; using a free one", wanted=s.admin_port, url=self.admin.url)

        platforms = {slug: (await self.runtime.ports.platforms(slug)).name for slug in s.creators()}
        write_runtime_json(
            self.data_dir / "runtime.json",
            nats_url=nats_url,
            database_url=db_url,
            admin_url=self.admin.url,
            pid=os.getpid(),
            embedded={"nats": self.nats is not None, "postgres": self.pg is not None},
        )
        self._summary(platforms)

    def _summary(self, platforms: dict[str, str]) -> None:
        assert self.runtime is not None and self.admin is not None
        s = self.runtime.settings
        _say(f"vaultline is running (pid {os.getpid()})")
        _say(f"  admin     {self.admin.url}   (token: {self._token_hint('admin')})")
        _say(f"  ingest    {self.admin.url}/api/ingest   (ComfyUI node's ingest-only token: {self._token_hint('ingest')})")
        if self.admin.scheme == "http" and not is_loopback(s.admin_host):
            _say(f"  WARNING   plain HTTP on {s.admin_host} (--insecure-bind): tokens and cookies cross the network in clear")
        _say(f"  data dir  {self.data_dir}")
        _say(f"  library   {s.library_root.absolute()}")
        for slug, creator in s.creators().items():
            for folder in creator.comfy_output_dirs:
                _say(f"  watching  {folder.absolute()}  (new images for {slug})")
        _say(f"  nats      {_redact(s.nats_url or '')}{'  (embedded)' if self.nats else ''}")
        _say(f"  postgres  {_redact(s.database_url or '')}{'  (embedded)' if self.pg else ''}")
        if self.pg is not None and self.pg.system_user:
            _say(f"  pg data   {self.pg.pgdata}  (as system user {self.pg.system_user}: PostgreSQL refuses root)")
        _say(f"  handlers  {', '.join(self.runtime.handlers)}")
        for slug, platform in platforms.items():
            note = "" if platform != "local" else f"  (uploads filed under {s.library_root}/{slug}/5_uploaded/)"
            _say(f"  creator   {slug}: platform {platform}{note}")
        if "fanvue" in platforms.values() or s.fanvue_webhook_secret:
            secret = "signed with VAULTLINE_FANVUE_WEBHOOK_SECRET" if s.fanvue_webhook_secret else (
                "refused: VAULTLINE_FANVUE_WEBHOOK_SECRET is not set")
            sync = f"every {s.fanvue_sync_interval:g} s" if s.fanvue_sync_interval > 0 else "off"
            _say(f"  fanvue    webhooks {self.admin.url}/webhooks/fanvue/<event> ({secret}); sync {sync}")
        _say("  stop with Ctrl-C")

    def _token_hint(self, which: str) -> str:
        if getattr(self.settings, f"{which}_token"):
            return f"VAULTLINE_{which.upper()}_TOKEN"
        return str(self.data_dir / f"{which}-token")

    async def _nats_ok(self) -> bool:
        return bool(self.runtime and self.runtime.nc and self.runtime.nc.is_connected)

    async def _db_ok(self) -> bool:
        assert self.runtime and self.runtime.pool
        return await self.runtime.pool.fetchval("SELECT 1") == 1

    async def _stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "runtime.json").unlink()
        if self.admin is not None:
            await self.admin.stop()
        if self.runtime is not None:
            await self.runtime.stop()
        for server in (self.pg, self.nats):
            if server is not None:
                await asyncio.to_thread(server.stop)


def _redact(url: str) -> str:
    """The URL(s) with each password replaced by *** (a NATS URL may list several servers)."""
    return ",".join(_redact_one(u) for u in url.split(","))


def _redact_one(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
