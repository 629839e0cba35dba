"""After a crash, in-flight work resumes within 60 s: a worker subprocess is killed with SIGKILL
in the middle of an upload (waiting on the platform, sending heartbeats); a second worker takes
the message over once the short ack_wait passes, and the platform gets no second media."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest

from tests.children import start_worker, worker_died
from tests.fanvue_server import FanvueTestServer
from tests.integration.test_upload import approval, in_review
from tests.waiting import wait_until
from vaultline.adapters.bus.topology import CONSUMERS
from vaultline.adapters.fanvue.tokens import PostgresTokenStore, TokenSet, load_cipher
from vaultline.bootstrap import Runtime

pytestmark = pytest.mark.integration

RESUME_DEADLINE_S = 60.0


async def test_an_upload_killed_mid_work_resumes_within_a_minute(settings, pool, tmp_path):
    assert CONSUMERS["upload"].ack_wait_s <= 30
    (cid,) = await in_review(pool, settings.library_root, 1)
    workers: list[subprocess.Popen] = []
    log = tmp_path / "workers.log"
    with FanvueTestServer() as server:
        tokens = TokenSet.from_token_response(server.issue_tokens(), now=time.time())
        await PostgresTokenStore(pool, load_cipher(settings.data_dir)).save("elena", tokens)  # logged in
        env = {"VAULTLINE_FANVUE_BASE_URL": server.base_url}
        try:
            async with Runtime(settings, []) as rt:  # provisions; publishes like the review page would
                gate = server.hold("media.complete_upload")
                workers.append(start_worker("upload", settings, env, log))
                await rt.publisher.publish(approval(cid, "ppv"))
                await wait_until(lambda: gate.entered == 1 or worker_died(workers[0], log), timeout=60,
                                 what="the first worker to be mid-upload")  # fmt: skip
                workers[0].send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                await asyncio.to_thread(workers[0].wait, 10)
                gate.release()
                workers.append(start_worker("upload", settings, env, log))
                await wait_until(
                    lambda: pool.fetchval("SELECT status = 'uploaded' FROM content WHERE id = $1", cid),
                    timeout=RESUME_DEADLINE_S + 30, interval=0.2, what="the upload to resume and finish",
                )  # fmt: skip
                resumed_in = time.monotonic() - killed_at
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
                    await asyncio.to_thread(w.wait, 30)
    assert resumed_in < RESUME_DEADLINE_S, f"resumed after {resumed_in:.1f}s\n{log.read_text()[-3000:]}"
    assert server.count("media.create_upload") == 1 and len(server.completions) == 1  # one platform media
    assert await pool.fetchval("SELECT step FROM uploads WHERE content_id = $1", cid) == "done"
