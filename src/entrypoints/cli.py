"""`vaultline` command line. Every command that talks to a running stack finds it through
--data-dir (env VAULTLINE_DATA_DIR, default ./vaultline-data) and DIR/runtime.json, or
through VAULTLINE_NATS_URL / VAULTLINE_DATABASE_URL."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from vaultline.entrypoints.cli_common import DataDir, JsonOut, connected, err, out, settings_for
from vaultline.events import CROP_MODES
from vaultline.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
events_app = typer.Typer(no_args_is_help=True, help="The audit trail: events in the stream.")
app.add_typer(events_app, name="events")

def _logging(s: Settings, to_file: bool) -> None:
    from vaultline.entrypoints.logs import configure_logging, filter_native_stderr

    filter_native_stderr()  # run and worker may load MediaPipe
    file = s.log_file or (s.data_dir / "logs" / "vaultline.log" if to_file else None)
    configure_logging(s.log_level, file, "json" if file and s.log_format == "auto" else s.log_format)


# --------------------------------------------------------------------------- run / worker


InsecureBind = typer.Option(
    False,
    "--insecure-bind",
    help="Serve the admin app over plain HTTP on a non-loopback VAULTLINE_ADMIN_HOST (only on a network "
    "that is yours alone; otherwise set VAULTLINE_ADMIN_TLS_CERT/KEY).",
)


@app.command()
def run(
    data_dir: Path = DataDir,
    log_to_file: bool = typer.Option(False, "--log-file", help="Write JSON logs to DIR/logs/ instead of stderr."),
    insecure_bind: bool = InsecureBind,
) -> None:
    """Run the whole pipeline in this process. Starts embedded nats-server and PostgreSQL
    under the data dir unless VAULTLINE_NATS_URL / VAULTLINE_DATABASE_URL are set."""
    from vaultline.entrypoints.admin import InsecureConfiguration
    from vaultline.entrypoints.datadir import AlreadyRunning, ensure_data_dir
    from vaultline.entrypoints.stack import Stack

    s = settings_for(data_dir or Path("./vaultline-data"))
    if insecure_bind:
        s = s.model_copy(update={"admin_insecure_bind": True})
    ensure_data_dir(s.data_dir)  # 0700, before anything (the log file) creates it
    _logging(s, log_to_file)
    try:
        asyncio.run(Stack(s).run())
    except AlreadyRunning as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    except InsecureConfiguration as e:
        err.print(f"[red]refusing to start[/red]: {e}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def worker(
    name: str = typer.Argument(..., help="Handler to run: tracker, crop, dlq, ... or `relay` for the outbox relay."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="Messages processed at once."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=0, help="Port of this worker's /metrics (env VAULTLINE_METRICS_PORT, 9464)."
    ),
    data_dir: Path = DataDir,
) -> None:
    """Run one handler against external NATS/PostgreSQL (scale out: start more on the same name)."""
    from vaultline.bootstrap import HANDLERS, Runtime
    from vaultline.entrypoints.admin import load_or_create_token
    from vaultline.entrypoints.metrics_http import metrics_server, runtime_refresh

    s = connected(data_dir, need_db=True)
    if metrics_port is not None:
        s = s.model_copy(update={"metrics_port": metrics_port})
    _logging(s, False)
    if name != "relay" and name not in HANDLERS:
        err.print(f"[red]unknown worker {name!r}[/red]; known: relay, {', '.join(sorted(HANDLERS))}")
        raise typer.Exit(2)

    async def main() -> None:
        import signal

        rt = Runtime(s, [] if name == "relay" else [name], concurrency=concurrency, relay=name == "relay")
        await rt.start()
        token = None if s.metrics_public else load_or_create_token(s.data_dir, s.admin_token)
        server = metrics_server(host=s.metrics_host, port=s.metrics_port, token=token, public=s.metrics_public,
                               refresh=runtime_refresh(rt))  # fmt: skip
        serving = rt.add_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if serving.done():
            serving.result()  # the bind error
        if server.fell_back:  # a scrape configured for the port would miss this worker: say so
            err.print(f"[yellow]metrics port {s.metrics_port} taken; serving on {server.url}[/yellow]")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(f"worker {name} running (concurrency {concurrency}); metrics on {server.url}/metrics; Ctrl-C to stop")
        await stop.wait()
        await server.stop()
        await rt.stop()

    asyncio.run(main())


@app.command()
def admin(data_dir: Path = DataDir, insecure_bind: bool = InsecureBind) -> None:
    """Serve the admin HTTP app alone (review page, API, ingest hook) against external
    NATS/PostgreSQL, on VAULTLINE_ADMIN_HOST:VAULTLINE_ADMIN_PORT (default 127.0.0.1:8765)."""
    from vaultline.bootstrap import Runtime
    from vaultline.entrypoints.admin import AdminContext, AdminServer, InsecureConfiguration, Services, admin_security, create_app
    from vaultline.entrypoints.metrics_http import with_metrics

    s = connected(data_dir, need_db=True)
    if insecure_bind:
        s = s.model_copy(update={"admin_insecure_bind": True})
    _logging(s, False)
    try:
        security = admin_security(s)
    except InsecureConfiguration as e:
        err.print(f"[red]refusing to start[/red]: {e}", highlight=False)
        raise typer.Exit(2) from None

    async def main() -> None:
        import signal

        async with Runtime(s, [], relay=False) as rt:
            ctx = AdminContext(
                token=security.token,
                ingest_token=security.ingest_token,
                trusted_hosts=security.trusted_hosts,
                services=Services.from_runtime(rt),
            )
            app = with_metrics(create_app(ctx), s, security.token, rt)
            server = AdminServer(app, host=s.admin_host, port=s.admin_port, tls=security.tls)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
            err.print(
                f"admin app on {server.scheme}://{s.admin_host}:{s.admin_port} (tokens: VAULTLINE_ADMIN_TOKEN or "
                f"{s.data_dir}/admin-token; ingest only: VAULTLINE_INGEST_TOKEN or {s.data_dir}/ingest-token)"
            )
            await server.serve()

    asyncio.run(main())


# --------------------------------------------------------------------------- set-up commands


@app.command()
def migrate(data_dir: Path = DataDir) -> None:
    """Apply pending database migrations (each once, in order; safe to run concurrently)."""
    from vaultline.adapters.db import migrate as do_migrate

    s = connected(data_dir, need_db=True)
    applied = asyncio.run(do_migrate(s.database_url))
    out.print(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@app.command()
def provision(
    data_dir: Path = DataDir,
    recreate: list[str] = typer.Option([], "--recreate", help="Delete and recreate this consumer (loses its position)."),
) -> None:
    """Create or update the streams and durable consumers (also done by `run` and `worker`)."""
    from vaultline.adapters.bus.provision import provision as do_provision
    from vaultline.adapters.bus.stream import connect

    s = connected(data_dir)

    async def main() -> Any:
        nc, js = await connect(s.nats_url)
        try:
            return await do_provision(
                js, replicas=s.stream_replicas, default_max_deliver=s.max_deliver, recreate=tuple(recreate)
            )
        finally:
            await nc.close()

    report = asyncio.run(main())
    for kind, items in (("stream", report.streams), ("consumer", report.consumers)):
        for name, state in items.items():
            out.print(f"{kind:8} {name:12} {state}")


# --------------------------------------------------------------------------- the audit trail


def _event_row(se: Any) -> dict[str, Any]:
    e = se.event
    base = {"seq": se.seq, "subject": se.subject, "stored_at": se.stored_at.isoformat() if se.stored_at else None}
    if e is None:
        return base | {"error": se.error, "raw": se.raw.decode(errors="replace")[:500]}
    return base | json.loads(e.model_dump_json())


def _print_events(rows: list[dict[str, Any]], as_json: bool, title: str, *, causation: bool = False) -> None:
    from vaultline.entrypoints.replay import causes

    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    caused_by = causes(rows) if causation else {}
    table = Table(title=title)
    cols = ("seq", "time", "type", "caused by", "summary") if causation else ("seq", "time", "type", "creator", "key", "summary")
    for col in cols:
        table.add_column(col, overflow="fold", no_wrap=col in ("seq", "time", "type", "caused by"))
    for r in rows:
        if "error" in r:
            table.add_row(str(r["seq"]), r.get("stored_at") or "", "[red]invalid[/red]", *[""] * (len(cols) - 4), r["error"])
            continue
        summary = ", ".join(f"{k}={v}" for k, v in (r.get("payload") or {}).items() if v not in (None, [], {}, ""))
        middle = (caused_by.get(r["event_id"], "-"),) if causation else (r["creator"], r["key"])
        table.add_row(str(r["seq"]), r["occurred_at"][:19], r["type"], *middle, summary[:120])
    out.print(table)


async def _collect(s: Settings, subject: str, start_seq: int | None, limit: int | None) -> list[dict[str, Any]]:
    from vaultline.adapters.bus.stream import connect, read_events

    nc, js = await connect(s.nats_url)
    try:
        rows = [_event_row(se) async for se in read_events(js, subject=subject, start_seq=start_seq)]
    finally:
        await nc.close()
    return rows[-limit:] if limit else rows


@events_app.command("tail")
def events_tail(
    n: int = typer.Option(20, "-n", help="How many of the latest events to show."),
    subject: str = typer.Option(">", "--subject", help="Filter, e.g. 'image.cropped.>' or '*.*.elena.>'."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Print the latest events in the stream."""
    from vaultline.adapters.bus.stream import connect, last_seq, read_events

    s = connected(data_dir)
    if not follow:
        _print_events(asyncio.run(_collect(s, subject, None, n)), as_json, "events")
        return

    async def main() -> None:
        nc, js = await connect(s.nats_url)
        try:
            start = max(1, await last_seq(js) - n + 1)
            async for se in read_events(js, subject=subject, start_seq=start, follow=True):
                _print_events([_event_row(se)], as_json, "")
        finally:
            await nc.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


@app.command()
def history(
    key: str = typer.Argument(..., help="A content id (or fan/sale key)."),
    creator: str | None = typer.Option(None, "--creator"),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Every event of one image (or fan, or sale), oldest first: its audit trail."""
    from vaultline.adapters.bus.stream import history_subject

    s = connected(data_dir)
    rows = asyncio.run(_collect(s, history_subject(key, creator), None, None))
    if not rows and not as_json:
        err.print(f"no events for {key}")
        raise typer.Exit(1)
    # "caused by": the event (seq, type) whose handling produced this one: the causation chain.
    _print_events(rows, as_json, f"history of {key}", causation=True)


@events_app.command("publish")
def events_publish(
    type_: str = typer.Argument(..., metavar="TYPE", help="Event type, e.g. image.rejected"),
    key: str = typer.Option(..., "--key", help="Content id (or fan/sale id)."),
    payload: str = typer.Option(..., "--payload", help="The payload as JSON."),
    creator: str | None = typer.Option(None, "--creator"),
    data_dir: Path = DataDir,
) -> None:
    """Publish one event by hand (operators' escape hatch and smoke test). Validated first."""
    from vaultline.adapters.bus.broker import JetStreamPublisher, make_broker
    from vaultline.events import new_event

    s = connected(data_dir)
    try:
        event = new_event(type_, creator=creator or s.default_creator, key=key, payload=json.loads(payload))
    except (ValueError, json.JSONDecodeError) as e:
        err.print(f"[red]invalid event[/red]: {e}")
        raise typer.Exit(2) from None

    async def main() -> None:
        broker = make_broker(s.nats_url)
        await broker.connect()
        try:
            await JetStreamPublisher(broker).publish(event)
        finally:
            await broker.stop()

    asyncio.run(main())
    out.print(f"published {event.type} {event.event_id} on {event.subject}")


# --------------------------------------------------------------------------- ingest / crop

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _image_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            err.print(f"[yellow]skipped[/yellow] {p}: no such file or directory")
    return files


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Image files, or directories walked for .png/.jpg/.jpeg/.webp."),
    creator: str | None = typer.Option(None, "--creator", help="Persona slug [default: the configured default]."),
    mode: str | None = typer.Option(None, "--mode", help=f"Crop mode: {' | '.join(CROP_MODES)} [default: creator's]."),
    as_json: bool = JsonOut,
    data_dir: Path = DataDir,
) -> None:
    """Ingest existing images into the running pipeline (each distinct image once per creator)."""
    from rich.progress import Progress

    from vaultline.bootstrap import Ingestor, Runtime

    if mode is not None and mode not in CROP_MODES:
        err.print(f"[red]unknown mode {mode!r}[/red]; use one of {', '.join(CROP_MODES)}")
        raise typer.Exit(2)
    s = connected(data_dir, need_db=True)
    files = _image_files(paths)
    if not files:
        err.print("[red]no images found[/red]")
        raise typer.Exit(2)

    async def main() -> list[dict[str, Any]]:
        rows = []
        async with Runtime(s, [], relay=False, do_provision=False) as rt:
            ingestor = Ingestor(rt.ports)
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("ingesting", total=len(files))
                for f in files:
                    try:
                        r = await ingestor.ingest_bytes(f.read_bytes(), filename=f.name, source="cli", creator=creator, mode=mode)
                        rows.append({"path": str(f), "content_id": str(r.content_id), "status": r.status,
                                     "near_duplicate_of": str(r.near_duplicate_of) if r.near_duplicate_of else None})  # fmt: skip
                    except OSError as e:
                        rows.append({"path": str(f), "status": "error", "error": str(e)})
                    progress.advance(task)
        return rows

    rows = asyncio.run(main())
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
    else:
        table = Table(title=f"ingested {sum(r['status'] == 'ingested' for r in rows)} of {len(rows)}")
        for col in ("path", "status", "content_id", "note"):
            table.add_column(col, overflow="fold")
        for r in rows:
            note = r.get("error") or (f"near duplicate of {r['near_duplicate_of']}" if r.get("near_duplicate_of") else "")
            table.add_row(r["path"], r["status"], r.get("content_id", ""), note)
        out.print(table)
    if any(r["status"] == "error" for r in rows):
        raise typer.Exit(1)


def _register_subcommands() -> None:
    from vaultline.entrypoints.chat_cli import chat_app, inbox_app
    from vaultline.entrypoints.crop_batch import crop_command
    from vaultline.entrypoints.dlq_cli import dlq_app
    from vaultline.entrypoints.fanvue_cli import fanvue_app
    from vaultline.entrypoints.review_cli import review_app, status_command
    from vaultline.entrypoints.stats_cli import report_command, stats_command

    app.command("crop")(crop_command)
    app.add_typer(fanvue_app, name="fanvue")
    app.add_typer(review_app, name="review")
    app.command("status")(status_command)
    from vaultline.entrypoints.sends_cli import register as register_sends

    register_sends(app)
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(inbox_app, name="inbox")
    app.add_typer(chat_app, name="chat")
    app.command("stats")(stats_command)
    app.command("report")(report_command)
    from vaultline.entrypoints.replay_cli import register as register_replay

    register_replay(app)


_register_subcommands()


def main() -> None:
    # Logs go to stderr from the first line on, so --json output on stdout stays parseable;
    # `run`, `worker` and `admin` reconfigure at the configured level.
    from vaultline.entrypoints.logs import configure_logging

    configure_logging("WARNING")
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as e:  # the settings: name the problem, never echo the input (secrets)
        for problem in e.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in problem["loc"])
            msg = problem["msg"].removeprefix("Value error, ")
            err.print(f"[red]invalid configuration[/red]: {f'{where}: ' if where else ''}{msg}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
