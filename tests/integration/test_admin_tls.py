"""The admin app over TLS (issue 13, finding 7): what a non-loopback bind needs."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.waiting import wait_until
from vaultline.entrypoints.admin import COOKIE, AdminContext, AdminServer, admin_security, create_app
from vaultline.settings import Settings

TOKEN = "k" * 40


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_settings_serve_https_with_a_secure_session_cookie(tmp_path):
    cert, key = self_signed(tmp_path)
    s = Settings(data_dir=tmp_path / "data", admin_token=TOKEN, admin_tls_cert=cert, admin_tls_key=key,
                 admin_host="0.0.0.0")  # fmt: skip
    security = admin_security(s)  # a public bind is fine with TLS
    assert security.tls == (cert, key)
    app = create_app(AdminContext(token=security.token, trusted_hosts=security.trusted_hosts))
    server = AdminServer(app, host="127.0.0.1", port=0, tls=security.tls)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), what="the https server")
        assert server.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=server.url, verify=trust) as http:
            assert (await http.get("/health")).status_code == 200
            login = await http.post("/login", data={"token": TOKEN})
            assert login.status_code == 303
            attrs = [a.strip().lower() for a in login.headers["set-cookie"].split(";")]
            assert attrs[0].startswith(f"{COOKIE}=") and "secure" in attrs
        async with httpx.AsyncClient(base_url=server.url.replace("https", "http")) as plain:
            try:
                r = await plain.get("/health")
                assert r.status_code >= 400
            except httpx.HTTPError:
                pass  # plain HTTP gets nothing from a TLS port
    finally:
        await server.stop()
        await asyncio.wait_for(task, 10)
