"""The whole pipeline, generated -> uploaded (local platform), with 1 and 2 crop worker processes.

Per run: a fresh embedded nats-server (sync_interval: always) and PostgreSQL from their wheels;
every stage in its own `vaultline worker` process (crop x N, tracker, library, upload, relay),
as a scaled-out deployment runs them. This process ingests the images (the ingest use case the
folder watcher and the HTTP hook call: a copy in 1_raw/, image.generated) and plays the
reviewer: for each image.cropped it calls the review page's own use case (`review.approve`:
content row + outbox in one transaction, published by the relay). There is no auto-approve
switch in the product; the reviewer's think time is the only thing left out.

The images: the crop bench's generated 832x1216 ComfyUI-like PNGs with real faces (0-2 each,
~1 MB with ~70 KB of prompt/workflow text), `--distinct` different pictures, each ingested
under a different `bench_index` tEXt chunk so every file is a new image to ingest (ingest
dedupes by content hash; same pixels flag a near-duplicate, which only adds a note for the
reviewer). Crop modes cycle no_face / chin / lips_only. Workers are warmed up on a separate
creator before the clock starts.

Measured from the stream: latency = each image's media.uploaded `occurred_at` minus its
image.generated `occurred_at`; throughput = images / (last uploaded - first generated); per
stage: generated -> cropped (queue + crop), cropped -> approved (tracker + the reviewer),
approved -> uploaded (relay + upload + its projection), and the rate at which each stage
finished. CPU seconds per component (psutil) say which process was busy.

    .venv/bin/python bench/pipeline.py [--images 500] [--crop-workers 1,2] [--rate 0] [--json]
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_args, embedded_stack  # noqa: E402

CREATOR = "bench"
WARMUP_CREATOR = "warmup"
MODES = ("no_face", "chin", "lips_only")  # as bench/crop.py
STAGES = ("tracker", "library", "upload", "relay")  # one process each, beside the crop workers
DONE = ("uploaded", "crop_failed", "upload_failed", "rejected")


# --------------------------------------------------------------------------- images


def with_index(png: bytes, index: int) -> bytes:
    """The same PNG with a `bench_index` tEXt chunk before IEND: new bytes, same pixels."""
    body = b"bench_index\x00" + str(index).encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    iend = png.rindex(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    return png[:iend] + chunk + png[iend:]


def image_set(n: int, distinct: int, seed: int = 7) -> list[bytes]:
    from bench.crop import build_set

    bases = build_set(min(n, distinct), seed)
    return [with_index(bases[i % len(bases)], i) for i in range(n)]


# --------------------------------------------------------------------------- processes


def start_workers(settings: Any, crop_workers: int, log_dir: Path, upload_concurrency: int) -> dict[str, subprocess.Popen]:
    from tests.children import start_worker

    procs: dict[str, subprocess.Popen] = {}
    for i in range(crop_workers):
        procs[f"crop{i + 1}"] = start_worker("crop", settings, {}, log_dir / f"crop{i + 1}.log", "--metrics-port", "0")
    for name in STAGES:
        extra = ("-c", str(upload_concurrency)) if name == "upload" else ()
        procs[name] = start_worker(name, settings, {}, log_dir / f"{name}.log", "--metrics-port", "0", *extra)
    return procs


def check_alive(procs: dict[str, subprocess.Popen], log_dir: Path) -> None:
    for name, p in procs.items():
        if p.poll() is not None:
            tail = (log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker {name} exited with {p.returncode}:\n{tail}")


def stop_workers(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class CpuMeter:
    """CPU seconds (user + system) per named process and its children between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.before: dict[str, dict[int, float]] = {}
        self.machine_before: Any = None

    def _sample(self) -> dict[str, dict[int, float]]:
        import psutil

        out: dict[str, dict[int, float]] = {}
        for name, p in self.procs.items():
            per: dict[int, float] = {}
            # This process's children are the servers and workers, each counted on its own.
            family = [p] if p.pid == os.getpid() else [p, *p.children(recursive=True)]
            for q in family:
                try:
                    t = q.cpu_times()
                    per[q.pid] = t.user + t.system
                except psutil.Error:
                    pass
            out[name] = per
        return out

    def start(self) -> None:
        import psutil

        self.before = self._sample()
        self.machine_before = psutil.cpu_times()

    def stop(self) -> dict[str, Any]:
        import psutil

        after, machine = self._sample(), psutil.cpu_times()
        used = {name: sum(t - self.before.get(name, {}).get(pid, 0.0) for pid, t in per.items())
                for name, per in after.items()}  # fmt: skip
        total = sum(machine) - sum(self.machine_before)
        idle = (machine.idle + getattr(machine, "iowait", 0.0)) - (
            self.machine_before.idle + getattr(self.machine_before, "iowait", 0.0))  # fmt: skip
        return {"per_component_s": used, "machine_busy_fraction": 1 - idle / total if total else None}


# --------------------------------------------------------------------------- the reviewer


class Reviewer:
    """Approves every image.cropped of `creators` through the review page's use case. An image
    whose content row the tracker has not moved to in_review yet is tried again shortly."""

    def __init__(self, runtime: Any, creators: tuple[str, ...]) -> None:
        self.rt = runtime
        self.creators = creators
        self.approved = 0
        self.retries = 0
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        # An ordered push consumer (new messages pushed as they are stored, gaps re-requested by
        # nats-py): the reviewer sees each image.cropped once, without polling.
        from vaultline.events import parse_event

        async def on_message(msg: Any) -> None:
            event = parse_event(msg.data)
            if event.creator in self.creators:
                t = asyncio.create_task(self._approve(event))
                self._tasks.add(t)
                t.add_done_callback(self._done)

        sub = await self.rt.ports.js.subscribe("image.cropped.>", cb=on_message, ordered_consumer=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sub.unsubscribe()

    def _done(self, t: asyncio.Task) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            self.errors.append(repr(t.exception()))

    async def _approve(self, event: Any) -> None:
        import uuid

        from vaultline.domain.errors import Conflict, NotFound
        from vaultline.handlers import review

        cid, delay = uuid.UUID(event.key), 0.005
        while True:
            try:
                await review.approve(self.rt.ports.uow, cid, {"vault": "ppv", "price_cents": 999}, "bench")
                self.approved += 1
                return
            except (Conflict, NotFound) as e:
                status = await self.rt.ports.pool.fetchval("SELECT status FROM content WHERE id = $1", cid)
                # in_review: the tracker projected image.cropped between our try and this read.
                if status not in (None, "generated", "recrop_requested", "in_review"):
                    self.errors.append(f"{cid}: {e}")  # decided already, or failed: nothing to approve
                    return
                self.retries += 1
                await asyncio.sleep(delay)  # the tracker has not projected image.cropped yet
                delay = min(delay * 2, 0.1)


# --------------------------------------------------------------------------- one run


async def _counts(pool: Any, creator: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM content WHERE creator = $1 GROUP BY status", creator)
    return {r["status"]: r["n"] for r in rows}


async def _wait_done(pool: Any, creator: str, n: int, timeout: float, procs: dict, log_dir: Path, reviewer: Reviewer,
                     progress: Callable[[dict[str, int]], None] | None, every: float = 0.25) -> dict[str, int]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        counts = await _counts(pool, creator)
        if progress:
            progress(counts)
        if sum(counts.get(s, 0) for s in DONE) >= n:
            return counts
        check_alive(procs, log_dir)
        if reviewer.errors:
            raise RuntimeError(f"the bench reviewer failed: {reviewer.errors[:3]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{creator}: {counts} after {timeout:.0f}s (logs in {log_dir})")
        await asyncio.sleep(every)


async def _ingest_all(ingestor: Any, images: list[bytes], creator: str, rate: float, concurrency: int = 2) -> float:
    """Ingest every image (at most `rate` per second when > 0); returns the seconds it took."""
    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()

    async def one(i: int, data: bytes) -> None:
        if rate > 0:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        async with sem:
            await ingestor.ingest_bytes(data, filename=f"{creator}_{i:04d}.png", source="cli", creator=creator,
                                        mode=MODES[i % len(MODES)])  # fmt: skip

    await asyncio.gather(*(one(i, d) for i, d in enumerate(images)))
    return time.perf_counter() - t0


async def _timeline(js: Any, creator: str) -> dict[str, dict[str, datetime]]:
    """content key -> event type -> occurred_at, for the creator's image events."""
    from vaultline.adapters.bus.stream import read_events

    types = ("image.generated", "image.cropped", "image.approved", "media.uploaded")
    out: dict[str, dict[str, datetime]] = {}
    async for se in read_events(js, subjects=[f"{t}.{creator}.>" for t in types]):
        if se.event is not None:
            out.setdefault(se.event.key, {}).setdefault(se.event.type, se.event.occurred_at)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def summarize(timeline: dict[str, dict[str, datetime]], n: int) -> dict[str, Any]:
    done = {k: t for k, t in timeline.items() if "image.generated" in t and "media.uploaded" in t}
    span = lambda t, a, b: (t[b] - t[a]).total_seconds()  # noqa: E731
    first = min(t["image.generated"] for t in timeline.values())
    last = max(t["media.uploaded"] for t in done.values()) if done else first
    wall = (last - first).total_seconds()
    latency = [span(t, "image.generated", "media.uploaded") for t in done.values()]
    stages = {}
    for name, a, b in (("generated -> cropped", "image.generated", "image.cropped"),
                       ("cropped -> approved", "image.cropped", "image.approved"),
                       ("approved -> uploaded", "image.approved", "media.uploaded")):  # fmt: skip
        vals = [span(t, a, b) for t in done.values() if a in t and b in t]
        ends = sorted(t[b] for t in timeline.values() if b in t)
        # Rate at which this stage finished images: count / (its last - first finish).
        rate = (len(ends) - 1) / (ends[-1] - ends[0]).total_seconds() if len(ends) > 1 and ends[-1] > ends[0] else None
        stages[name] = {"p50_s": pct(vals, 50), "p99_s": pct(vals, 99), "finished_per_s": rate}
    gens = sorted(t["image.generated"] for t in timeline.values())
    ingest_rate = (len(gens) - 1) / (gens[-1] - gens[0]).total_seconds() if len(gens) > 1 else None
    return {
        "images": n, "uploaded": len(done), "wall_s": wall, "images_per_s": len(done) / wall if wall else None,
        "p50_s": pct(latency, 50), "p99_s": pct(latency, 99), "max_s": max(latency, default=float("nan")),
        "ingested_per_s": ingest_rate, "stages": stages,
    }  # fmt: skip


async def run(settings: Any, images: list[bytes], crop_workers: int, *, log_dir: Path, rate: float = 0.0,
              upload_concurrency: int = 1, warmup: int = 2, timeout: float | None = None,
              progress: Callable[[str, dict[str, int]], None] | None = None,
              server_pids: dict[str, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """One measured run against the migrated database and NATS of `settings` (both fresh)."""
    from vaultline.bootstrap import Ingestor, Runtime

    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(images)
    timeout = timeout or max(120.0, n * 3.0)  # a busy shared machine can be 10x slower
    # This process: ingest and the reviewer only (it also provisions the stream and consumers).
    async with Runtime(settings, [], relay=False) as rt:
        procs = start_workers(settings, crop_workers, log_dir, upload_concurrency)
        reviewer = Reviewer(rt, (CREATOR, WARMUP_CREATOR))
        review_task = asyncio.create_task(reviewer.run())
        tasks: dict[str, asyncio.Task] = {}
        try:
            assert rt.ports is not None and rt.pool is not None
            ingestor = Ingestor(rt.ports)
            # Warm-up on another creator: worker start, MediaPipe graphs, pools, first queries.
            warm = [with_index(images[i % n], 10_000 + i) for i in range(max(1, warmup * crop_workers))]
            t_start = time.perf_counter()
            await _ingest_all(ingestor, warm, WARMUP_CREATOR, 0.0)
            await _wait_done(rt.pool, WARMUP_CREATOR, len(warm), 300, procs, log_dir, reviewer,
                             (lambda c: progress("warm-up", c)) if progress else None)  # fmt: skip
            warm_s = time.perf_counter() - t_start

            pids = {name: p.pid for name, p in procs.items()} | (server_pids or {}) | {"bench process": os.getpid()}
            cpu = CpuMeter(pids)
            cpu.start()
            load_before = os.getloadavg()
            ingest_task = tasks["ingest"] = asyncio.create_task(_ingest_all(ingestor, images, CREATOR, rate))
            counts = await _wait_done(rt.pool, CREATOR, n, timeout, procs, log_dir, reviewer,
                                      (lambda c: progress("measured", c)) if progress else None)  # fmt: skip
            ingest_s = await ingest_task
            used = cpu.stop()
            load_after = os.getloadavg()
            timeline = await _timeline(rt.ports.js, CREATOR)
        finally:
            for t in (review_task, *tasks.values()):
                t.cancel()
            await asyncio.gather(review_task, *tasks.values(), return_exceptions=True)
            stop_workers(procs)
    result = summarize(timeline, n)
    if result["uploaded"] != counts.get("uploaded", 0):
        raise RuntimeError(f"the stream shows {result['uploaded']} uploads, the content table {counts}")
    result.update({
        "crop_workers": crop_workers, "upload_concurrency": upload_concurrency, "offered_rate": rate,
        "statuses": counts, "ingest_call_s": ingest_s, "warmup_s": warm_s, "approve_retries": reviewer.retries,
        "reviewer_errors": reviewer.errors[:5], "cpu": used, "loadavg_before": load_before,
        "loadavg_after": load_after,
    })  # fmt: skip
    per_image = {k: v / max(1, result["uploaded"]) * 1000 for k, v in used["per_component_s"].items()}
    result["cpu_ms_per_image"] = {k: per_image[k] for k in sorted(per_image, key=lambda k: -per_image[k])}
    result.update(cpu_ceiling(per_image))
    return result


def cpu_ceiling(per_image: dict[str, float]) -> dict[str, float | None]:
    """What the CPU alone allows on this machine's cores if nothing else ran (no waiting)."""
    total = sum(per_image.values())
    crop = sum(v for k, v in per_image.items() if k.startswith("crop"))
    cores = os.cpu_count() or 1
    return {"cpu_ms_per_image_total": total, "cpu_bound_images_per_s": cores * 1000 / total if total else None,
            "crop_only_images_per_s": cores * 1000 / crop if crop else None}  # fmt: skip


async def run_embedded(images: list[bytes], crop_workers: int, **kw: Any) -> dict[str, Any]:
    """`run` on fresh embedded servers in a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="vaultline-bench-pipeline-") as tmp:
        d = Path(tmp)
        async with embedded_stack(d, d / "data") as (s, ns, pg):
            pids = {"nats-server": ns.pid, "postgresql": pg.pid}
            return await run(s, images, crop_workers, log_dir=d / "logs",
                             server_pids={k: v for k, v in pids.items() if v}, **kw)  # fmt: skip


# --------------------------------------------------------------------------- report


def progress_printer(total: int) -> Callable[[str, dict[str, int]], None]:
    """A progress line on stderr at most every 2 s (and at the end of each phase)."""
    last = [0.0]

    def show(phase: str, counts: dict[str, int]) -> None:
        done = sum(counts.get(s, 0) for s in DONE)
        now = time.monotonic()
        if now - last[0] < 2 and not (phase == "measured" and done >= total):
            return
        last[0] = now
        bar_n = 30 * done // max(1, total) if phase == "measured" else 0
        status = " ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  {phase:8} [{'#' * bar_n}{'.' * (30 - bar_n)}] {done}/{total if phase == 'measured' else '-'}  "
              f"{status}", file=sys.stderr, flush=True)  # fmt: skip

    return show


def markdown(rows: list[dict[str, Any]], args: Any) -> str:
    out = [
        f"Pipeline bench: {args.images} generated 832x1216 PNGs ({args.distinct} distinct pictures), "
        f"generated -> cropped -> approved (bench reviewer) -> uploaded (local platform); "
        f"offered {'as fast as ingest goes' if not args.rate else f'at {args.rate:g}/s'}; "
        f"upload concurrency {args.upload_concurrency}.",
        "",
        "| crop workers | uploaded | images/s | p50 s | p99 s | ingest/s | cropped/s | approved/s | uploaded/s "
        "| crop stage p50 s | review p50 s | upload stage p50 s | machine busy | load before -> after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for r in rows:
        st = r["stages"]
        out.append(
            f"| {r['crop_workers']} | {r['uploaded']}/{r['images']} | **{f(r['images_per_s'])}** | {f(r['p50_s'])} "
            f"| {f(r['p99_s'])} | {f(r['ingested_per_s'])} | {f(st['generated -> cropped']['finished_per_s'])} "
            f"| {f(st['cropped -> approved']['finished_per_s'])} | {f(st['approved -> uploaded']['finished_per_s'])} "
            f"| {f(st['generated -> cropped']['p50_s'], 2)} | {f(st['cropped -> approved']['p50_s'], 2)} "
            f"| {f(st['approved -> uploaded']['p50_s'], 2)} | {r['cpu']['machine_busy_fraction']:.0%} "
            f"| {r['loadavg_before'][0]:.2f} -> {r['loadavg_after'][0]:.2f} |"
        )
    out += ["", "CPU ms per image, by process (children included):", ""]
    names = list(dict.fromkeys(k for r in rows for k in r["cpu_ms_per_image"]))
    out.append("| crop workers | " + " | ".join(names) + " |")
    out.append("|---:|" + "---:|" * len(names))
    for r in rows:
        out.append(f"| {r['crop_workers']} | " + " | ".join(f(r["cpu_ms_per_image"].get(k), 0) for k in names) + " |")
    out += ["", "| crop workers | CPU ms per image, all processes | images/s the CPU allows on idle cores "
            "| the crop alone on every core |", "|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['crop_workers']} | {f(r['cpu_ms_per_image_total'], 0)} | {f(r['cpu_bound_images_per_s'])} "
                   f"| {f(r['crop_only_images_per_s'])} |")
    out += ["", f"{os.cpu_count()} cores; target >= 20 images/s."]
    return "\n".join(out)


def main() -> None:
    import json

    args = bench_args(__doc__.split("\n\n")[0], {
        "--images": {"type": int, "default": 500},
        "--crop-workers": {"default": "1,2", "help": "comma-separated worker counts, one run each"},
        "--distinct": {"type": int, "default": 24, "help": "different pictures in the set (generating one costs ~0.4 s)"},
        "--rate": {"type": float, "default": 0.0, "help": "images offered per second (0: as fast as ingest goes)"},
        "--upload-concurrency": {"type": int, "default": 1, "help": "the upload worker's -c (product default 1)"},
    })  # fmt: skip
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    t = time.perf_counter()
    images = image_set(args.images, args.distinct)
    print(f"{len(images)} images ready in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    rows = []
    for w in (int(x) for x in args.crop_workers.split(",")):
        print(f"run with {w} crop worker(s):", file=sys.stderr, flush=True)
        rows.append(asyncio.run(run_embedded(images, w, rate=args.rate, upload_concurrency=args.upload_concurrency,
                                             progress=progress_printer(len(images)))))  # fmt: skip
    print(json.dumps(rows, indent=2, default=str) if args.json else markdown(rows, args))


if __name__ == "__main__":
    main()
