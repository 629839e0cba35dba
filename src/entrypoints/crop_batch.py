"""`vaultline crop PATH... --mode M --out DIR [--json]`: crop images locally, no stack needed.

Registered by the CLI with `app.command("crop")(crop_command)`. Each image is cropped on its
own: a bad file is reported (an `error` field with --json) and the run goes on. The exit code
is non-zero only when nothing could run: unknown mode (2), no inputs found (2), output
directory not writable (1).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vaultline.adapters.files import write_atomic
from vaultline.events import CROP_MODES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Job:
    input: Path
    output: Path
    mode: str


# --------------------------------------------------------------------------- inputs and names


def find_inputs(paths: Iterable[Path], out_dir: Path) -> list[tuple[Path, Path]]:
    """(file, subdirectory of the output) for every input. Directories are walked recursively
    in sorted order for IMAGE_SUFFIXES, skipping the output directory itself (so re-running
    on a folder never crops earlier outputs); the subdirectory mirrors the walked tree.
    Files named explicitly are taken whatever their suffix; missing paths come back as-is
    and fail when read."""
    out_resolved = out_dir.resolve()
    found: list[tuple[Path, Path]] = []
    for path in paths:
        if not path.is_dir():
            found.append((path, Path()))
            continue
        for root, dirs, files in os.walk(path):
            root_path = Path(root)
            dirs[:] = sorted(d for d in dirs if (root_path / d).resolve() != out_resolved)
            for name in sorted(files):
                if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                    found.append((root_path / name, root_path.relative_to(path)))
    return found


def plan_jobs(inputs: list[tuple[Path, Path]], out_dir: Path, mode: str) -> list[Job]:
    """Deterministic output names: `<subdir>/<stem>.<mode>.png`. When two inputs would share a
    name (x.png and x.jpg), each colliding one gets 8 hex digits of its path's sha256."""
    names = [out_dir / sub / f"{src.stem}.{mode}.png" for src, sub in inputs]
    seen: dict[Path, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    jobs = []
    for (src, sub), name in zip(inputs, names):
        if seen[name] > 1:
            tag = hashlib.sha256(str(src).encode()).hexdigest()[:8]
            name = out_dir / sub / f"{src.stem}-{tag}.{mode}.png"
        jobs.append(Job(input=src, output=name, mode=mode))
    return jobs


# --------------------------------------------------------------------------- the work

_cropper = None  # one per process: it holds the MediaPipe graphs


def _get_cropper():
    global _cropper
    if _cropper is None:
        from vaultline.adapters.cropper import Cropper

        _cropper = Cropper()
    return _cropper


def crop_one(job: Job) -> dict[str, Any]:
    """Crop one file and write the archive copy; never raises for a bad input."""
    from vaultline.adapters.imaging import BadImage

    record: dict[str, Any] = {"input": str(job.input), "output": None, "mode": job.mode}
    try:
        data = job.input.read_bytes()
    except OSError as e:
        return {**record, "error": f"cannot read: {e.strerror or e}"}
    try:
        result = _get_cropper().crop(data, job.mode)
    except BadImage as e:
        return {**record, "error": e.reason}
    except Exception as e:  # a bug must not abort the other images; report it with its type
        return {**record, "error": f"{type(e).__name__}: {e}"}
    try:
        write_atomic(job.output, result.archive_png)
    except OSError as e:
        return {**record, "error": f"cannot write {job.output}: {e.strerror or e}"}
    d = result.decision
    return {
        **record,
        "output": str(job.output),
        "mode_used": d.mode_used,
        "face_found": d.face_found,
        "faces": d.faces,
        "cut_y": d.cut_y,
        "width": result.width,
        "height": result.height,
        "confidence": None if d.confidence is None else round(d.confidence, 4),
        "fallback_reason": d.fallback_reason,
        "needs_manual_crop": d.needs_manual_crop,
        "output_check": d.output_check,
        "error": None,
    }


def run_jobs(jobs: list[Job], workers: int) -> Iterator[dict[str, Any]]:
    """Results in input order. workers > 1: a process pool (spawn: MediaPipe runs threads, and
    forking a process with threads can deadlock), one Cropper per process."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(crop_one, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        yield from pool.map(crop_one, jobs, chunksize=1)


def _writable(out: Path) -> str | None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


# --------------------------------------------------------------------------- the command


def crop_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Image files, or directories walked for .png/.jpg/.jpeg/.webp.", show_default=False),
    ],
    mode: Annotated[str, typer.Option("--mode", "-m", help=f"Crop mode: {' | '.join(CROP_MODES)}.")] = "no_face",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output directory (created if missing).")
    ] = Path("cropped"),
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON line per image on stdout.")] = False,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = 1,
) -> None:
    """Crop images face-aware and write OUT/<stem>.<mode>.png.

    The files written are ARCHIVE copies: they keep the source's PNG text chunks (ComfyUI
    prompt and workflow), EXIF and ICC profile. They are the operator's local copies; do not
    upload them anywhere (the pipeline uploads a stripped copy instead). Images without a
    usable face lose their top 30 % (mode_used "fallback"). Progress goes to stderr.
    """
    err = Console(stderr=True, soft_wrap=True)  # no hard wraps inside paths and messages
    if mode not in CROP_MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose one of {', '.join(CROP_MODES)}", param_hint="--mode")
    jobs = plan_jobs(find_inputs(paths, out), out, mode)
    if not any(job.input.exists() for job in jobs):  # a missing file among good ones is per-image
        missing = [str(p) for p in paths if not p.exists()]
        err.print(
            "[red]no input images found[/red] (looked for " + ", ".join(IMAGE_SUFFIXES) + ")"
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
        raise typer.Exit(2)
    if problem := _writable(out):
        err.print(f"[red]output directory {out} is not writable[/red]: {problem}")
        raise typer.Exit(1)

    from vaultline.entrypoints.logs import filter_native_stderr

    filter_native_stderr()  # MediaPipe's native start-up lines are not for the operator
    counts = {"cropped": 0, "failed": 0, "fallback": 0, "manual": 0}
    progress = Progress(
        TextColumn("cropping"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=False
    )
    with progress:
        task = progress.add_task("crop", total=len(jobs))
        for record in run_jobs(jobs, workers):
            progress.advance(task)
            if record["error"]:
                counts["failed"] += 1
            else:
                counts["cropped"] += 1
                counts["fallback"] += record["mode_used"] == "fallback"
                counts["manual"] += bool(record["needs_manual_crop"])
            if json_lines:
                typer.echo(json.dumps(record, ensure_ascii=False))
            else:
                typer.echo(_human(record))
    err.print(
        f"{counts['cropped']} cropped, {counts['failed']} failed, {counts['fallback']} without a face "
        f"(top 30 % removed), {counts['manual']} need a manual crop"
    )


def _human(r: dict[str, Any]) -> str:
    if r["error"]:
        return f"FAILED  {r['input']}: {r['error']}"
    what = f"{r['mode_used']}, cut at row {r['cut_y']}"
    if r["needs_manual_crop"]:
        what += ", NEEDS MANUAL CROP"
    if r["fallback_reason"]:
        what += f" ({r['fallback_reason']})"
    return f"ok      {r['input']} -> {r['output']}  [{what}]"


__all__ = ["IMAGE_SUFFIXES", "crop_command", "crop_one", "find_inputs", "plan_jobs"]
