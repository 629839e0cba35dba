"""`vaultline fanvue ...`: connect a creator's Fanvue account and check it.

    vaultline fanvue login --creator elena                # browser login (OAuth + PKCE)
    vaultline fanvue login --creator elena --access-token T --refresh-token R   # tokens you already have
    vaultline fanvue whoami --creator elena
    vaultline fanvue sync [--once] [--creator elena]     # poll chats, purchases, earnings
    vaultline fanvue webhooks [--json]                   # signed webhooks that published nothing

Mounted by the main CLI with `app.add_typer(fanvue_app, name="fanvue")`. Tokens go encrypted into
Postgres (platform_tokens); the key is VAULTLINE_SECRET_KEY or DATA_DIR/secret.key. Login (and
whoami) also store the account's Fanvue user uuid (fanvue_accounts), which routes webhooks.

Configuration: settings.py (Settings.fanvue, the VAULTLINE_FANVUE_* variables).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import webbrowser
from collections.abc import Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, AsyncIterator, Optional, TypeVar

import asyncpg
import typer

from vaultline.adapters.db import create_pool
from vaultline.adapters.db.fanvue import PostgresFanvueStore, save_account
from vaultline.adapters.fanvue import connect
from vaultline.adapters.fanvue.client import FanvueClient
from vaultline.adapters.fanvue.errors import FanvueError, SecretKeyError, TokenDecryptError
from vaultline.adapters.fanvue.oauth import login_interactive
from vaultline.adapters.fanvue.tokens import InMemoryTokenStore, PostgresTokenStore, TokenSet
from vaultline.adapters.platforms import fanvue_budget
from vaultline.domain.errors import UserError
from vaultline.events import SLUG_RE
from vaultline.handlers.fanvue_sync import SyncReport, sync_loop
from vaultline.settings import Settings

fanvue_app = typer.Typer(help="Fanvue account: log in a creator, check who the tokens belong to, sync.",
                         no_args_is_help=True)

T = TypeVar("T")
SettingsFactory = Callable[[], Settings]
_settings_factory: SettingsFactory = lambda: Settings().resolved()  # noqa: E731


def configure(settings_factory: SettingsFactory) -> None:
    """Let the main CLI pass its own settings (e.g. after --data-dir) instead of the env default."""
    global _settings_factory
    _settings_factory = settings_factory


class CliError(Exception):
    """A message for the operator; the command exits 1."""


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; an error the operator can act on is one line and exit 1."""
    try:
        return asyncio.run(coro)
    except (CliError, FanvueError, SecretKeyError, TokenDecryptError, UserError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except asyncpg.UndefinedTableError as exc:
        typer.echo(f"error: {exc}: run `vaultline migrate`", err=True)
        raise typer.Exit(1) from None


def _check_creator(creator: str) -> str:
    if not SLUG_RE.match(creator):
        raise typer.BadParameter(f"creator must be a slug ([a-z0-9_-]): {creator!r}", param_hint="--creator")
    return creator


@asynccontextmanager
async def token_store(settings: Settings) -> AsyncIterator[PostgresTokenStore]:
    if not settings.database_url:
        raise CliError("no database: set VAULTLINE_DATABASE_URL or start `vaultline run` "
                       f"(looked for {settings.runtime_file})")
    async with connect.token_store(settings.database_url, settings.data_dir) as store:
        yield store


async def _login(creator: str, access_token: str | None, refresh_token: str | None,
                 expires_in: int | None, client_id: str | None, port: int, timeout: float,
                 browser: bool, settings: Settings) -> tuple[TokenSet, dict[str, Any]]:
    cfg = settings.fanvue
    if access_token:
        tokens = TokenSet(access_token, refresh_token,
                          time.time() + expires_in if expires_in else None, scope="")
    else:
        if not (client_id or cfg.client_id):
            raise CliError("interactive login needs the app's client id: --client-id or VAULTLINE_FANVUE_CLIENT_ID")
        if not cfg.client_secret:
            typer.echo("warning: VAULTLINE_FANVUE_CLIENT_SECRET is not set; the token exchange may be refused",
                       err=True)

        def show(url: str) -> None:
            typer.echo(f"Redirect URI (must be registered in the Fanvue app): http://127.0.0.1:{port}/callback")
            typer.echo("Open this URL to log in:\n")
            typer.echo(url + "\n")
            if browser:
                webbrowser.open(url)

        async with connect.oauth_client(cfg, client_id) as oauth:
            tokens = await login_interactive(oauth, on_url=show, port=port, timeout=timeout)
    # Whose tokens are these? Asked before anything is stored, so a login either installs the
    # tokens and the account (which routes webhooks to this creator) or nothing.
    staged = InMemoryTokenStore()
    await staged.save(creator, tokens)
    try:
        async with connect.fanvue_client(creator, cfg, staged) as client:
            me = await client.whoami()
    except FanvueError as exc:
        raise CliError(f"could not read the account behind these tokens (GET /users/me): {exc}") from exc
    tokens = await staged.load(creator) or tokens  # refreshed on the way, if it had to be
    async with token_store(settings) as store:
        await save_account(settings.database_url, creator, me)
        await store.save(creator, tokens)
    return tokens, me


@fanvue_app.command()
def login(
    creator: str = typer.Option(..., "--creator", help="creator slug the account belongs to"),
    access_token: Optional[str] = typer.Option(None, "--access-token", envvar="VAULTLINE_FANVUE_ACCESS_TOKEN",
                                               help="store these tokens instead of logging in (non-interactive)"),
    refresh_token: Optional[str] = typer.Option(None, "--refresh-token", envvar="VAULTLINE_FANVUE_REFRESH_TOKEN"),
    expires_in: Optional[int] = typer.Option(None, "--expires-in",
                                             help="seconds the given access token stays valid (default: until a 401)"),
    client_id: Optional[str] = typer.Option(None, "--client-id", help="default VAULTLINE_FANVUE_CLIENT_ID"),
    port: int = typer.Option(8765, "--port", help="loopback port of the registered redirect URI"),
    timeout: float = typer.Option(300.0, "--timeout", help="seconds to wait for the browser callback"),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="open the URL in a browser"),
) -> None:
    """Connect a creator's Fanvue account and store its tokens encrypted."""
    _check_creator(creator)
    if refresh_token and not access_token:
        raise typer.BadParameter("--refresh-token needs --access-token", param_hint="--refresh-token")
    settings = _settings_factory()
    tokens, me = _run(_login(creator, access_token, refresh_token, expires_in, client_id, port,
                             timeout, browser, settings))
    scope = f" (scopes: {tokens.scope})" if tokens.scope else ""
    typer.echo(f"Fanvue tokens stored for {creator}{scope}: account @{me.get('handle')} uuid={me.get('uuid')}.")


async def _whoami(creator: str, settings: Settings) -> dict[str, Any]:
    async with token_store(settings) as store, connect.fanvue_client(creator, settings.fanvue, store) as client:
        me = await client.whoami()
    await save_account(settings.database_url, creator, me)  # keeps webhook routing current
    return me


@fanvue_app.command()
def whoami(
    creator: str = typer.Option(..., "--creator", help="creator slug"),
    as_json: bool = typer.Option(False, "--json", help="print the whole profile as JSON"),
) -> None:
    """Show the Fanvue account the stored tokens belong to (refreshes them if needed)."""
    _check_creator(creator)
    settings = _settings_factory()
    me = _run(_whoami(creator, settings))
    if as_json:
        typer.echo(json.dumps(me, indent=2, sort_keys=True))
    else:
        typer.echo(f"@{me.get('handle')} ({me.get('displayName')}) uuid={me.get('uuid')} "
                   f"creator={me.get('isCreator')}")


async def _sync(settings: Settings, creator: str | None, once: bool, interval: float,
                on_report: Callable[[SyncReport], Any]) -> list[SyncReport | BaseException]:
    if not settings.database_url:
        raise CliError("no database: set VAULTLINE_DATABASE_URL or start `vaultline run` "
                       f"(looked for {settings.runtime_file})")
    pool = await create_pool(settings.database_url, max_size=4)
    clients: dict[str, FanvueClient] = {}
    try:
        store = PostgresFanvueStore(pool)
        known = await store.fanvue_creators()
        if creator is not None and creator not in known:
            raise CliError(f"creator {creator!r} is not logged in to Fanvue: run `vaultline fanvue login --creator {creator}`")
        if not known and once:
            raise CliError("no creator is logged in to Fanvue: run `vaultline fanvue login --creator C` first")
        if not known:
            # The loop (a deployment's fanvue-sync service) starts before anyone logs in: it
            # re-reads the logged-in creators every pass instead of exiting into a restart loop.
            typer.echo("no creator is logged in to Fanvue yet: waiting for `vaultline fanvue login --creator C`",
                       err=True)
        tokens = connect.token_store(pool, settings.data_dir)

        async def api_for(c: str) -> FanvueClient:
            if c not in clients:
                # The budget uploads of a running `vaultline run` spend too (through PostgreSQL).
                clients[c] = connect.fanvue_client(c, settings.fanvue, tokens, rate_limiter=fanvue_budget(pool, c))
            return clients[c]

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await sync_loop(store, api_for, interval_s=interval, stop=stop,
                               creators=[creator] if creator else None, once=once, on_report=on_report,
                               earnings_lookback=timedelta(days=settings.fanvue_earnings_lookback_days))
    finally:
        for client in clients.values():
            await client.aclose()
        await pool.close()


@fanvue_app.command()
def sync(
    once: bool = typer.Option(False, "--once", help="one pass, then exit (default: a pass every --interval)"),
    creator: Optional[str] = typer.Option(None, "--creator", help="only this creator (default: every creator "
                                                                  "logged in to Fanvue)"),
    interval: Optional[float] = typer.Option(None, "--interval", min=1.0,
                                             help="seconds between passes (default: VAULTLINE_FANVUE_SYNC_INTERVAL)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per creator and pass"),
) -> None:
    """Poll Fanvue for new fan messages, purchases and earnings (for installs without a public
    webhook URL). Facts go to the outbox; a running `vaultline run` publishes them."""
    if creator is not None:
        _check_creator(creator)
    settings = _settings_factory()

    def show(report: SyncReport) -> None:
        if as_json:
            typer.echo(json.dumps(report.as_json(), sort_keys=True))
        else:
            typer.echo(f"{report.creator}: {report.messages} fan messages, {report.purchases} purchases, "
                       f"{report.earnings} earnings rows, {report.new_events} new events "
                       f"({report.requests} requests)")
            for line in report.skipped:
                typer.echo(f"  skipped {line}", err=True)

    every = interval or settings.fanvue_sync_interval or 300.0
    results = _run(_sync(settings, creator, once, every, show))
    failed = [r for r in results if isinstance(r, BaseException)]
    for exc in failed:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
    if failed:
        raise typer.Exit(1)


async def _unrouted(settings: Settings, limit: int) -> list[dict[str, Any]]:
    if not settings.database_url:
        raise CliError("no database: set VAULTLINE_DATABASE_URL or start `vaultline run`")
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        return await PostgresFanvueStore(pool).unrouted(limit)
    finally:
        await pool.close()


@fanvue_app.command()
def webhooks(
    limit: int = typer.Option(20, "-n", "--limit", min=1, help="how many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="a JSON array, bodies included"),
) -> None:
    """Webhooks that were signed but published nothing (unknown recipient, unreadable body)."""
    rows = _run(_unrouted(_settings_factory(), limit))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no kept webhooks")
    for r in rows:
        typer.echo(f"{r['last_seen_at']}  {r['event']:<17} x{r['deliveries']}  {r['reason']}")
