"""The one place a Fanvue client is wired for a creator: token store + manager + refresher +
client, on the creator's request budget.
Used by the upload platform, the `vaultline fanvue` CLI and the sync loop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultline.adapters.fanvue.client import FanvueClient, shared_bucket
from vaultline.adapters.fanvue.errors import AuthError
from vaultline.adapters.fanvue.oauth import OAuthClient
from vaultline.adapters.fanvue.tokens import PostgresTokenStore, TokenManager, TokenSet, TokenStore, load_cipher
from vaultline.settings import FanvueConfig

if TYPE_CHECKING:
    import asyncpg


def oauth_client(cfg: FanvueConfig, client_id: str | None = None) -> OAuthClient:
    """The token endpoint of the configured Fanvue app (close it: `async with`)."""
    return OAuthClient(client_id or cfg.client_id or "", cfg.client_secret,
                       token_url=cfg.token_url, authorize_url=cfg.authorize_url)


def token_store(pool_or_dsn: "asyncpg.Pool | str", data_dir: Path) -> PostgresTokenStore:
    """Encrypted tokens in Postgres; the key is VAULTLINE_SECRET_KEY or DATA_DIR/secret.key."""
    return PostgresTokenStore(pool_or_dsn, load_cipher(data_dir))


def fanvue_client(creator: str, cfg: FanvueConfig, store: TokenStore, *,
                  rate_limiter: Any = None, **client_kw: Any) -> FanvueClient:
    """A client for `creator` whose tokens live in `store`. An expired token is refreshed through
    the app's token endpoint (single-flight in the store); without a client id it cannot be, and
    the call fails with an AuthError that says so. `rate_limiter`: the creator's request budget
    (platforms.fanvue_budget, shared through PostgreSQL by every process); default, a bucket
    shared within this process."""

    async def refresher(current: TokenSet) -> TokenSet:
        if not cfg.client_id:
            raise AuthError(f"the Fanvue access token of {creator!r} needs a refresh: "
                            "set VAULTLINE_FANVUE_CLIENT_ID (and _CLIENT_SECRET)")
        async with oauth_client(cfg) as oauth:
            return await oauth.refresh_tokens(current)

    return FanvueClient(
        TokenManager(store, refresher, creator),
        creator=creator,
        base_url=cfg.base_url,
        path_prefix=cfg.path_prefix,
        rate_limiter=rate_limiter or shared_bucket(creator),
        **client_kw,
    )
