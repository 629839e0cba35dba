"""Fanvue upload benchmark against the test Fanvue server (tests/fanvue_server.py) on loopback.

Each upload is the product's full path: create session → part URL → S3 PUT → complete → poll
until ready → attach to a vault folder. Runs once without faults and once with a share of requests
failing at random (seeded): 429 with Retry-After: 1, 500, a slow response beyond the client
timeout, and a 401 "expired token" (→ refresh through the real token endpoint). Real time, real
sockets; the client-side rate bucket is lifted so the number measures the client, not the 200/60 s
budget (at that budget ~6 requests per upload cap a creator at ~33 uploads/min).

    .venv/bin/python bench/upload.py [--n 50] [--size-mib 1] [--concurrency 4] [--fault-rate 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fanvue_server

from tests.fanvue_server import FanvueTestServer  # noqa: E402
from vaultline.adapters.fanvue.client import FanvueClient  # noqa: E402
from vaultline.adapters.fanvue.errors import FanvueError  # noqa: E402
from vaultline.adapters.fanvue.oauth import OAuthClient  # noqa: E402
from vaultline.adapters.fanvue.tokens import InMemoryTokenStore, TokenManager, TokenSet  # noqa: E402

MiB = 1024 * 1024


async def run(fault_rate: float, n: int, size: int, concurrency: int, seed: int) -> dict:
    with FanvueTestServer(seed=seed) as server:
        store = InMemoryTokenStore()
        await store.save("bench", TokenSet.from_token_response(server.issue_tokens(), now=time.time()))
        async with OAuthClient(server.client_id, server.client_secret, token_url=server.token_url) as oauth:
            manager = TokenManager(store, oauth.refresh_tokens, "bench")
            async with FanvueClient(manager, creator="bench", base_url=server.base_url, timeout=0.5,
                                    part_timeout=2.0, rate_limit=1_000_000, rate_period=1.0,
                                    max_retry_wait=5.0) as client:
                folder = await client.ensure_vault_folder("bench-feed")
                images = [os.urandom(size) for _ in range(n)]
                base_requests = server.total_requests()
                if fault_rate:
                    server.set_random_faults(fault_rate, kinds=("429", "500", "slow", "401"), seed=seed,
                                             retry_after="1", delay=1.0)
                sem = asyncio.Semaphore(concurrency)
                latencies: list[float] = []
                failures: list[str] = []

                async def one(i: int) -> None:
                    async with sem:
                        t0 = time.perf_counter()
                        try:
                            media = await client.upload_file(images[i], f"img_{i:04d}.png")
                            await client.wait_media_ready(media, timeout=30, poll=0.05)
                            await client.attach_to_folder(folder, media)
                            latencies.append(time.perf_counter() - t0)
                        except FanvueError as exc:
                            failures.append(type(exc).__name__)

                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                elapsed = time.perf_counter() - t0
                server.clear_faults()
                requests = server.total_requests() - base_requests
                attached = len(server.folders[folder]["media"])
    latencies.sort()
    return {
        "fault_rate": fault_rate, "n": n, "ok": len(latencies), "failed": len(failures),
        "failures": sorted(set(failures)), "attached": attached, "seconds": elapsed,
        "uploads_per_s": len(latencies) / elapsed, "requests_per_upload": requests / n,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "faults": dict(server.faults_served),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size-mib", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    size = int(args.size_mib * MiB)
    rows = [asyncio.run(run(rate, args.n, size, args.concurrency, args.seed)) for rate in (0.0, args.fault_rate)]
    print(f"\nFanvue upload bench: {args.n} × {args.size_mib:g} MiB images, concurrency {args.concurrency}, "
          f"test server on loopback (upload → ready → attach)\n")
    print("| injected faults | uploads ok / failed | wall s | uploads/s | HTTP requests / upload "
          "| p50 s | p95 s | faults served |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        faults = ", ".join(f"{k}×{v}" for k, v in sorted(r["faults"].items())) or "-"
        failed = f"{r['failed']}" + (f" ({', '.join(r['failures'])})" if r["failures"] else "")
        print(f"| {r['fault_rate']:.0%} | {r['ok']} / {failed} | {r['seconds']:.2f} | {r['uploads_per_s']:.1f} "
              f"| {r['requests_per_upload']:.2f} | {r['p50']:.3f} | {r['p95']:.3f} | {faults} |")


if __name__ == "__main__":
    main()
