"""`vaultline crop` as the lead registers it: app.command("crop")(crop_command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mediapipe", reason="the mediapipe wheel is missing (no cp313 wheel)")
import typer
from typer.testing import CliRunner

from tests.images import Placement, comfy_text, face_png, no_face_pngs  # noqa: E402
from vaultline.adapters.imaging import read_text_chunks  # noqa: E402
from vaultline.entrypoints.crop_batch import crop_command  # noqa: E402

app = typer.Typer()
app.command("crop")(crop_command)


@app.command("version")  # a second command, so "crop" is a subcommand as in the real CLI
def _version() -> None:
    typer.echo("test")


runner = CliRunner()


def crop(*args: str):
    return runner.invoke(app, ["crop", *args])


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def face_bytes() -> bytes:
    return face_png([Placement(center=(416, 500), width=700)], text=comfy_text())


@pytest.fixture
def inputs(tmp_path: Path, face_bytes: bytes) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a_face.png").write_bytes(face_bytes)
    (src / "b_bad.png").write_text("not an image at all")
    (src / "sub" / "c_noface.png").write_bytes(no_face_pngs()["gradient"])
    (src / "notes.txt").write_text("ignored: not an image suffix")
    return src


def test_json_lines_one_per_image_and_bad_files_do_not_stop_the_run(inputs: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = crop(str(inputs), "--mode", "chin", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    recs = records(result.stdout)
    assert [Path(r["input"]).name for r in recs] == ["a_face.png", "b_bad.png", "c_noface.png"]
    face, bad, noface = recs

    assert face["error"] is None and face["face_found"] and face["mode_used"] == "chin"
    assert face["output"] == str(out / "a_face.chin.png")
    assert isinstance(face["cut_y"], int) and 0 < face["cut_y"] < 1216
    # The file written is the archive copy: ComfyUI text kept.
    assert read_text_chunks(Path(face["output"]).read_bytes()) == comfy_text()

    assert bad["output"] is None and "not a PNG/JPEG/WEBP image" in bad["error"]

    assert noface["mode_used"] == "fallback" and noface["cut_y"] == 365
    assert noface["fallback_reason"].startswith("no face detected")
    assert noface["output"] == str(out / "sub" / "c_noface.chin.png")  # mirrors the tree
    assert Path(noface["output"]).exists()
    assert "2 cropped, 1 failed" in result.stderr


def test_rerun_into_an_output_dir_inside_the_input_does_not_crop_outputs(inputs: Path):
    out = inputs / "cropped"
    first = crop(str(inputs), "--out", str(out), "--json")
    second = crop(str(inputs), "--out", str(out), "--json")
    assert first.exit_code == second.exit_code == 0
    assert len(records(first.stdout)) == len(records(second.stdout)) == 3
    # Same input, same output bytes.
    assert records(first.stdout) == records(second.stdout)


def test_human_output_without_json(inputs: Path, tmp_path: Path):
    result = crop(str(inputs / "b_bad.png"), str(inputs / "sub"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAILED") and "b_bad.png" in lines[0]
    assert lines[1].startswith("ok") and "fallback" in lines[1]


def test_same_stem_different_suffix_get_distinct_names(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "x.png").write_bytes(no_face_pngs()["noise"])
    (src / "x.jpg").write_bytes(b"broken jpeg")
    result = crop(str(src / "x.png"), str(src / "x.jpg"), "--out", str(tmp_path / "o"), "--json")
    a, b = records(result.stdout)
    assert a["output"] and Path(a["output"]).name.startswith("x-") and a["output"].endswith(".no_face.png")
    assert b["error"]  # broken, but named apart from x.png


def test_missing_file_among_good_ones_is_reported_per_image(inputs: Path, tmp_path: Path):
    result = crop(str(inputs / "nope.png"), str(inputs / "sub"), "--out", str(tmp_path / "o"), "--json")
    assert result.exit_code == 0
    missing, ok = records(result.stdout)
    assert "cannot read" in missing["error"] and ok["error"] is None


def test_unknown_mode_exits_2(inputs: Path, tmp_path: Path):
    result = crop(str(inputs), "--mode", "eyes", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "unknown mode 'eyes'" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("what", ["empty-dir", "missing"])
def test_no_inputs_exits_2(tmp_path: Path, what: str):
    target = tmp_path / "empty"
    if what == "empty-dir":
        target.mkdir()
        (target / "readme.txt").write_text("no images here")
    result = crop(str(target), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "no input images found" in result.stderr


def test_unwritable_output_exits_1(inputs: Path, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output directory should be")
    result = crop(str(inputs), "--out", str(blocker / "out"))
    assert result.exit_code == 1
    assert "not writable" in result.stderr


def test_help_says_the_archive_copy_is_written():
    result = runner.invoke(app, ["crop", "--help"])
    assert result.exit_code == 0
    assert "ARCHIVE" in result.stdout and "--json" in result.stdout and "--workers" in result.stdout


def test_two_worker_processes_give_the_same_results(inputs: Path, tmp_path: Path):
    one = crop(str(inputs), "--out", str(tmp_path / "one"), "--json")
    two = crop(str(inputs), "--out", str(tmp_path / "two"), "--json", "--workers", "2")
    assert two.exit_code == 0, two.output
    strip = lambda rs: [{k: v for k, v in r.items() if k != "output"} for r in rs]  # noqa: E731
    assert strip(records(one.stdout)) == strip(records(two.stdout))
    for name in ("a_face.no_face.png", "sub/c_noface.no_face.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
