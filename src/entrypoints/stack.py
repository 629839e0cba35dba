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
import socket
import sys
import structlog

from vaultline.adapters.db import migrate
from vaultline.adapters.embedded import DataDirLock, EmbeddedNats, EmbeddedPostgres, write_runtime_json
from vaultline.bootstrap import HANDLERS, Runtime, background_tasks
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app, load_or_create_token
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
        self.stop_event = asyncio.Event()

    async def run(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
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

        token = load_or_create_token(self.data_dir, s.admin_token)
        ctx = AdminContext(
            token=token, services=Services.from_runtime(self.runtime), ready_checks=[self._nats_ok, self._db_ok]
        )
        port = s.admin_port if s.admin_port == 0 or _port_free(s.admin_host, s.admin_port) else 0
        if port != s.admin_port:
            log.warning("admin port taken; using a free one", wanted=s.admin_port)
        self.admin = AdminServer(with_metrics(create_app(ctx), s, token, self.runtime), host=s.admin_host, port=port)
        admin_task = self.runtime.add_task(self.admin.serve())
        while not self.admin.started:
            if admin_task.done():
                admin_task.result()  # raises the bind error
                raise RuntimeError("admin server exited during start")
            await asyncio.sleep(0.02)

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
        _say(f"  admin     {self.admin.url}   (token: {self._token_hint()})")
        _say(f"  data dir  {self.data_dir}")
        _say(f"  library   {s.library_root.absolute()}")
        for slug, creator in s.creators().items():
            for folder in creator.comfy_output_dirs:
                _say(f"  watching  {folder.absolute()}  (new images for {slug})")
        _say(f"  nats      {s.nats_url}{'  (embedded)' if self.nats else ''}")
        _say(f"  postgres  {_redact(s.database_url or '')}{'  (embedded)' if self.pg else ''}")
        _say(f"  handlers  {', '.join(self.runtime.handlers)}")
        for slug, platform in platforms.items():
            note = "" if platform != "local" else f"  (uploads filed under {s.library_root}/{slug}/5_uploaded/)"
            _say(f"  creator   {slug}: platform {platform}{note}")
        _say("  stop with Ctrl-C")

    def _token_hint(self) -> str:
        if self.settings.admin_token:
            return "VAULTLINE_ADMIN_TOKEN"
        return str(self.data_dir / "admin-token")

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


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
