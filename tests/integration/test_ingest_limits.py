"""The ingest hook bounds what it accepts (issue 13, finding 6): 413 and nothing stored."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.waiting import wait_until
from vaultline.adapters.bus.stream import read_events
from vaultline.bootstrap import Runtime
from vaultline.entrypoints.admin import AdminContext, AdminServer, Services, create_app

pytestmark = pytest.mark.integration

TOKEN = "t" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 200_000


def noise_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((side, side), 80).convert("RGB").save(out, "PNG", compress_level=0)
    return out.getvalue()


def multipart(data: bytes, boundary: str = "vaultline-test-boundary") -> tuple[bytes, str]:
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="creator"\r\n\r\nelena\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def test_oversize_uploads_get_413_and_nothing_is_stored(settings, pool, tmp_path):
    roots = tmp_path / "roots"
    roots.mkdir()
    s = settings.model_copy(update={"ingest_max_bytes": LIMIT, "ingest_roots": [roots]})
    big, small = noise_png(400), noise_png(100)
    assert len(big) > LIMIT > len(small)
    async with Runtime(s, [], relay=False) as rt:
        server = AdminServer(create_app(AdminContext(token=TOKEN, services=Services.from_runtime(rt))))
        rt.add_task(server.serve())
        await wait_until(lambda: server.started, what="admin server")
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=AUTH) as http:
            # Declared too large: refused from the Content-Length.
            r = await http.post("/api/ingest", files={"file": ("big.png", big, "image/png")})
            assert r.status_code == 413 and "VAULTLINE_INGEST_MAX_BYTES" in r.json()["error"]

            # No Content-Length (chunked): refused while it streams in.
            body, ctype = multipart(big)

            async def chunks():
                for i in range(0, len(body), 16_384):
                    yield body[i : i + 16_384]

            r = await http.post("/api/ingest", content=chunks(), headers={"Content-Type": ctype})
            assert r.status_code == 413, r.text

            # A file under an allowed root, too large.
            (roots / "big.png").write_bytes(big)
            r = await http.post("/api/ingest", json={"path": str(roots / "big.png")})
            assert r.status_code == 413

            assert await pool.fetchval("SELECT count(*) FROM content") == 0
            assert not any(p.is_file() for p in s.library_root.rglob("*")) if s.library_root.exists() else True
            assert [e async for e in read_events(rt.ports.js)] == []

            # Below the limit it goes through.
            r = await http.post("/api/ingest", files={"file": ("small.png", small, "image/png")})
            assert r.status_code == 201, r.text
        await server.stop()
