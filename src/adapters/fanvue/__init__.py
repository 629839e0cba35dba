"""Fanvue adapter: API client, OAuth, token storage, and the one place a client is wired
(`connect.fanvue_client`). The service's public endpoints are defined here (no imports, so
settings can use them as defaults)."""

DEFAULT_BASE_URL = "https://api.fanvue.com"
DEFAULT_AUTHORIZE_URL = "https://auth.fanvue.com/oauth2/auth"
DEFAULT_TOKEN_URL = "https://auth.fanvue.com/oauth2/token"
API_VERSION = "2025-06-26"
