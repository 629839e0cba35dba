"""The admin app's security (issue 13 findings 1, 2, 7 and the lows), over ASGI without I/O."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter

from vaultline.entrypoints.admin import (
    COOKIE,
    AdminContext,
    InsecureConfiguration,
    Sessions,
    check_bind,
    create_app,
    load_or_create_token,
    trusted_hosts,
)
from vaultline.entrypoints.routes import ROUTERS
from vaultline.settings import Settings

TOKEN = "a" * 40
INGEST = "i" * 40


def client_for(ctx: AdminContext, ip: str = "127.0.0.1", routers=None) -> httpx.AsyncClient:
    # raise_app_exceptions=False: see the response a client gets, as uvicorn would send it.
    transport = httpx.ASGITransport(app=create_app(ctx, routers), client=(ip, 50000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765")


# --------------------------------------------------------------------------- finding 1: tokens


@pytest.mark.parametrize(
    ("stored", "problem"),
    [("", "is empty"), ("\n", "is empty"), ("change-me\n", "placeholder"), ("short-token\n", "11 characters long")],
)
def test_a_weak_stored_token_refuses_the_start_naming_the_file(tmp_path, stored, problem):
    (tmp_path / "admin-token").write_text(stored)
    with pytest.raises(InsecureConfiguration, match=problem) as e:
        load_or_create_token(tmp_path)
    assert str(tmp_path / "admin-token") in str(e.value) and "delete the file" in str(e.value)


def test_a_new_token_is_long_random_and_created_private(tmp_path):
    token = load_or_create_token(tmp_path / "data", file="ingest-token")
    path = tmp_path / "data" / "ingest-token"
    assert len(token) >= 32 and path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path / "data", file="ingest-token") == token


@pytest.mark.parametrize("header", ["Bearer ", "Bearer   ", "bearer"])
async def test_an_empty_presented_token_is_never_accepted(header):
    async with client_for(AdminContext(token=TOKEN)) as c:
        r = await c.get("/ready", headers={"Authorization": header})
        assert r.status_code == 401
        r = await c.get("/ready", headers={"Cookie": f"{COOKIE}="})
        assert r.status_code == 401


def test_the_app_refuses_an_empty_admin_token():
    app = create_app(AdminContext(token=""))
    with pytest.raises(ValueError, match="empty"):
        app.build_middleware_stack()


# --------------------------------------------------------------------------- finding 2: ingest token


async def test_the_ingest_token_opens_post_api_ingest_and_nothing_else():
    async with client_for(AdminContext(token=TOKEN, ingest_token=INGEST)) as c:
        auth = {"Authorization": f"Bearer {INGEST}"}
        # Through authentication to the route (which has no services in this app: 503).
        assert (await c.post("/api/ingest", json={"path": "/x"}, headers=auth)).status_code == 503
        for method, path in (("GET", "/api/content"), ("GET", "/ready"), ("POST", "/api/content/x/approve")):
            r = await c.request(method, path, headers=auth)
            assert r.status_code == 403 and "ingest token" in r.json()["error"], (method, path)
        login = await c.post("/login", data={"token": INGEST})
        assert login.status_code == 401 and COOKIE not in login.headers.get("set-cookie", "")


# --------------------------------------------------------------------------- low: session cookie


async def test_the_session_cookie_is_a_signed_revocable_id_not_the_token():
    async with client_for(AdminContext(token=TOKEN)) as c:
        login = await c.post("/login", data={"token": TOKEN})
        session = login.cookies[COOKIE]
        assert TOKEN not in session
        assert (await c.get("/ready")).status_code == 200
        await c.get("/logout")
        c.cookies.set(COOKIE, session)  # a copy kept after signing out
        assert (await c.get("/ready")).status_code == 403
        c.cookies.set(COOKIE, TOKEN)  # the raw token is no session
        assert (await c.get("/ready")).status_code == 403
        sid, expiry, sig = session.split(".")
        c.cookies.set(COOKIE, f"{sid}.{int(expiry) + 10**6}.{sig}")  # a longer life, unsigned
        assert (await c.get("/ready")).status_code == 403


def test_sessions_end_when_they_expire_or_the_token_changes():
    cookie = Sessions(TOKEN).issue()
    assert Sessions(TOKEN).valid(cookie)
    assert not Sessions("b" * 40).valid(cookie)
    assert not Sessions(TOKEN, max_age=-1).valid(Sessions(TOKEN, max_age=-1).issue())


# --------------------------------------------------------------------------- finding 7


async def test_failed_sign_ins_are_throttled_per_client():
    ctx = AdminContext(token=TOKEN)
    app = create_app(ctx)

    def client(ip: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 1)), base_url="http://127.0.0.1")

    async with client("10.0.0.1") as attacker, client("10.0.0.2") as operator:
        for _ in range(5):
            assert (await attacker.post("/login", data={"token": "guess"})).status_code == 401
        for _ in range(5):
            assert (await attacker.get("/ready", headers={"Authorization": "Bearer guess"})).status_code == 403
        blocked = await attacker.post("/login", data={"token": TOKEN})  # even the right one, for now
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert (await attacker.get("/ready", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 429
        assert (await operator.post("/login", data={"token": TOKEN})).status_code == 303


async def test_requests_for_another_host_name_are_refused():
    ctx = AdminContext(token=TOKEN, trusted_hosts=trusted_hosts(Settings()))
    async with client_for(ctx) as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/health", headers={"Host": "localhost:8765"})).status_code == 200
        assert (await c.get("/health", headers={"Host": "[::1]:8765"})).status_code == 200
        rebound = await c.get("/health", headers={"Host": "attacker.example:8765"})
        assert rebound.status_code == 400 and "VAULTLINE_ADMIN_TRUSTED_HOSTS" in rebound.json()["error"]
    extra = trusted_hosts(Settings(admin_trusted_hosts=["vaultline.lan"]))
    assert "vaultline.lan" in extra


@pytest.mark.parametrize(
    ("update", "refused"),
    [
        ({}, False),
        ({"admin_host": "localhost"}, False),
        ({"admin_host": "0.0.0.0"}, True),
        ({"admin_host": "192.168.1.20"}, True),
        ({"admin_host": "0.0.0.0", "admin_insecure_bind": True}, False),
        ({"admin_host": "0.0.0.0", "admin_tls_cert": "c.pem", "admin_tls_key": "k.pem"}, False),
    ],
)
def test_a_non_loopback_bind_needs_tls_or_insecure_bind(update, refused):
    s = Settings(**update)
    if refused:
        with pytest.raises(InsecureConfiguration, match="TLS_CERT.*--insecure-bind"):
            check_bind(s)
    else:
        check_bind(s)


# --------------------------------------------------------------------------- low: error text


async def test_exception_text_never_reaches_the_client():
    boom = APIRouter()

    @boom.get("/api/boom")
    async def explode() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret/path")

    async with client_for(AdminContext(token=TOKEN), routers=[*ROUTERS, boom]) as c:
        r = await c.get("/api/boom", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 500
        assert "hunter2" not in r.text and "/srv/secret" not in r.text
        assert r.json() == {"error": "internal error (details are in the server log)"}
