"""The crop engine on real faces (packaged pictures placed into 832x1216 canvases).

Expected rows come from landmarks found on the ORIGINAL picture, mapped into the canvas with
the placement's known affine transform, so a wrong mapping of ROI landmarks back to image
pixels (or a wrong rule) shows up as a cut outside the expected band.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="the mediapipe wheel is missing (no cp313 wheel)")
from PIL import Image

from tests.images import (  # noqa: E402
    CANVAS_H,
    CANVAS_W,
    Placement,
    canvas,
    comfy_text,
    face_png,
    jpeg_bytes,
    no_face_pngs,
    png_bytes,
    source_image,
)
from vaultline.adapters.cropper import Cropper, CropResult  # noqa: E402
from vaultline.adapters.faces import FaceDetector  # noqa: E402
from vaultline.adapters.imaging import decode  # noqa: E402
from vaultline.domain import crop as C  # noqa: E402
from vaultline.events import CROP_MODES, ImageCropped  # noqa: E402

FALLBACK_CUT = round(0.30 * CANVAS_H)


@pytest.fixture(scope="module")
def detector():
    # MediaPipe graphs are built once for the whole module (~0.7 s with the import).
    with FaceDetector() as d:
        yield d


@pytest.fixture(scope="module")
def cropper(detector):
    return Cropper(detector)


@pytest.fixture(scope="module")
def original_landmarks(detector):
    @functools.cache
    def landmarks(source: str) -> np.ndarray:
        faces = detector.detect(np.ascontiguousarray(source_image(source)))
        assert len(faces) == 1 and faces[0].landmarks is not None, f"no face on the original {source}"
        return faces[0].landmarks

    return landmarks


def expected_face(placement: Placement, original_landmarks) -> C.Face:
    """The face as the original picture's landmarks say it must be in the canvas."""
    return C.Face(landmarks=placement.map_points(original_landmarks(placement.source)))


def faces_left(detector, result: CropResult) -> int:
    return len(detector.detect(decode(result.upload_png).rgb))


def assert_cut_matches(mode: str, cut_y: int, f: C.Face) -> None:
    """The cut row against the mapped landmarks; tolerance ~2 % of the face height."""
    h = f.height
    tol = 0.02 * h + 1
    if mode == "no_face":
        target = f.y(C.FACE_OVAL).max() + C.NO_FACE_MARGIN * h
        assert cut_y >= f.y(C.FACE_OVAL).max(), "chin still in the crop"
        assert abs(cut_y - target) <= tol, (cut_y, target)
    elif mode == "chin":
        assert f.y(C.LIPS).max() - 1 <= cut_y, "lower lip still in the crop"
        assert cut_y < f.point(C.CHIN)[1] - 0.05 * h, "chin cut away"
    else:
        nose, lip = f.y(C.NOSE_BOTTOM).max(), f.y(C.UPPER_OUTER_LIP).min()
        assert nose - tol <= cut_y <= lip + tol, (nose, cut_y, lip)
        assert (nose + lip) / 2 - tol <= cut_y <= (nose + lip) / 2 + tol


PLACEMENTS = {
    "astronaut-full-width": Placement(),
    "astronaut-centre": Placement(center=(416, 500), width=700),
    "astronaut-tilt-10": Placement(center=(416, 500), width=700, angle=10),
    "astronaut-small-83px-face": Placement(center=(416, 600), width=400),
    "astronaut-large-330px-face": Placement(center=(416, 500), width=1600),
    "grace-hopper": Placement("grace_hopper", center=(416, 450), width=600),
}


@functools.cache
def placement_png(name: str) -> bytes:
    return face_png([PLACEMENTS[name]], text=comfy_text())


@pytest.mark.parametrize("mode", CROP_MODES)
@pytest.mark.parametrize("name", PLACEMENTS)
def test_cut_row_follows_the_original_landmarks(cropper, detector, original_landmarks, name, mode):
    placement = PLACEMENTS[name]
    result = cropper.crop(placement_png(name), mode)
    d = result.decision
    assert (d.face_found, d.faces, d.mode_used, d.fallback_reason) == (True, 1, mode, None)
    assert_cut_matches(mode, d.cut_y, expected_face(placement, original_landmarks))
    assert (result.width, result.height) == (CANVAS_W, CANVAS_H - d.cut_y)
    if mode == "no_face":
        assert faces_left(detector, result) == 0


def test_research_golden_rows_on_the_astronaut_frame(cropper):
    # research/crop.md §7: no_face >= 286, chin in (251, 286), lips_only in (218, 225), +-3 px.
    png = face_png([Placement()])
    assert cropper.crop(png, "no_face").decision.cut_y >= 286 - 3
    assert 251 - 3 < cropper.crop(png, "chin").decision.cut_y < 286
    assert 218 - 3 <= cropper.crop(png, "lips_only").decision.cut_y <= 225 + 3


def test_tilted_head_no_face_cut_is_below_the_lowest_jaw_point(cropper, detector, original_landmarks):
    placement = Placement(center=(416, 500), width=700, angle=30)
    f = expected_face(placement, original_landmarks)
    assert f.y(C.FACE_OVAL).max() > f.point(C.CHIN)[1] + 3  # lm 152 is no longer the lowest
    result = cropper.crop(face_png([placement]), "no_face")
    assert_cut_matches("no_face", result.decision.cut_y, f)
    assert faces_left(detector, result) == 0


def test_lips_only_on_a_tilted_head_falls_back_below_the_nose(cropper, original_landmarks):
    placement = Placement(center=(416, 500), width=700, angle=-25)
    f = expected_face(placement, original_landmarks)
    d = cropper.crop(face_png([placement]), "lips_only").decision
    assert d.face_found and d.mode_used == "lips_only"
    assert "roll" in d.fallback_reason
    # No horizontal line separates nose and lips here; every nose and eye point is removed.
    assert d.cut_y >= f.y(C.IDENTITY_POINTS).max() - 0.02 * f.height
    assert d.cut_y > f.y(C.UPPER_OUTER_LIP).min()


def test_two_faces_the_cut_removes_the_upper_one_entirely(cropper, detector, original_landmarks):
    upper = Placement(center=(250, 300), width=400)
    lower = Placement(center=(600, 800), width=380)
    png = face_png([upper, lower])
    f_up, f_low = (expected_face(p, original_landmarks) for p in (upper, lower))

    no_face = cropper.crop(png, "no_face")
    assert no_face.decision.faces == 2
    assert_cut_matches("no_face", no_face.decision.cut_y, f_low)
    assert faces_left(detector, no_face) == 0

    chin = cropper.crop(png, "chin").decision
    assert chin.faces == 2
    assert_cut_matches("chin", chin.cut_y, f_low)  # the lower face keeps its chin
    assert chin.cut_y > f_up.y(C.FACE_OVAL).max()  # the upper face is gone


def test_grey_input_is_detected_and_stays_grey(cropper, original_landmarks):
    placement = Placement("camera", center=(416, 400), width=832)
    grey = Image.fromarray(canvas([placement])).convert("L")
    result = cropper.crop(png_bytes(grey), "no_face")
    assert result.decision.face_found and result.output_mode == "L"
    assert_cut_matches("no_face", result.decision.cut_y, expected_face(placement, original_landmarks))


@pytest.mark.parametrize("index", [0, 3, 7])
def test_tiny_lfw_faces_upscaled_are_found_and_removed(cropper, detector, index):
    result = cropper.crop(face_png([Placement(f"lfw:{index}", center=(416, 300), width=300)]), "no_face")
    assert result.decision.face_found
    assert faces_left(detector, result) == 0


def test_rgba_input_keeps_alpha(cropper):
    rgba = np.dstack([canvas([Placement()]), np.full((CANVAS_H, CANVAS_W), 255, np.uint8)])
    rgba[-50:, :, 3] = 0
    result = cropper.crop(png_bytes(rgba), "no_face")
    assert result.decision.face_found and result.output_mode == "RGBA"
    out = np.asarray(Image.open(io.BytesIO(result.upload_png)))
    assert out.shape[2] == 4 and (out[-50:, :, 3] == 0).all() and (out[:-50, :, 3] == 255).all()


def test_exif_rotated_jpeg_is_cropped_upright(cropper):
    upright = canvas([Placement()])
    expected = cropper.crop(png_bytes(upright), "no_face").decision.cut_y
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees counter-clockwise; viewers rotate it back
    data = jpeg_bytes(np.ascontiguousarray(np.rot90(upright)), quality=95, exif=exif.tobytes())
    result = cropper.crop(data, "no_face")
    assert result.exif_rotated and (result.original_width, result.original_height) == (CANVAS_W, CANVAS_H)
    assert result.decision.face_found
    assert abs(result.decision.cut_y - expected) <= 3


@pytest.mark.parametrize("name", ["noise", "gradient", "camera_lower"])
def test_images_without_faces_take_the_30_percent_fallback(cropper, name):
    result = cropper.crop(no_face_pngs()[name], "no_face")
    d = result.decision
    assert (d.cut_y, d.mode_used, d.face_found, d.needs_manual_crop) == (FALLBACK_CUT, "fallback", False, False)
    assert d.fallback_reason.startswith("no face detected")
    assert result.height == CANVAS_H - FALLBACK_CUT


def test_a_cat_is_not_a_face(cropper):
    d = cropper.crop(face_png([Placement("chelsea", center=(416, 400), width=800)]), "chin").decision
    assert d.mode_used == "fallback" and d.cut_y == FALLBACK_CUT


def test_same_bytes_same_output_and_payload(cropper):
    png = face_png([Placement(center=(416, 500), width=700)], text=comfy_text())
    a, b = cropper.crop(png, "chin"), cropper.crop(png, "chin")
    assert a.upload_png == b.upload_png and a.archive_png == b.archive_png
    assert a.decision == b.decision
    assert set(a.timings_ms) == {"decode", "detect", "crop", "encode", "total"}
    assert a.text_chunks == comfy_text()
    assert b"workflow" in a.archive_png and b"workflow" not in a.upload_png

    payload = a.to_cropped_payload("elena/2_cropped/x.png", review_key="elena/3_review/x.png")
    assert isinstance(payload, ImageCropped)
    assert payload.box.model_dump() == {"x0": 0, "y0": a.decision.cut_y, "x1": CANVAS_W, "y1": CANVAS_H}
    assert (payload.mode_used, payload.face_found, payload.faces) == ("chin", True, 1)
    assert (payload.width, payload.height) == (a.width, a.height)
    assert 0.5 <= payload.confidence <= 1


class RecordingDetector:
    def __init__(self):
        self.seen: list[np.ndarray] = []

    def detect(self, rgb):
        self.seen.append(rgb)
        return []


def test_the_detector_receives_rgb_not_bgr():
    arr = np.zeros((40, 30, 3), np.uint8)
    arr[..., 0] = 250  # pure red
    fake = RecordingDetector()
    Cropper(fake).crop(png_bytes(arr), "no_face")
    (rgb,) = fake.seen
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert tuple(rgb[0, 0]) == (250, 0, 0)


def test_unknown_mode_and_wrong_arrays_are_refused(detector):
    with pytest.raises(ValueError, match="unknown crop mode 'face'"):
        Cropper(RecordingDetector()).crop(png_bytes(np.zeros((8, 8, 3), np.uint8)), "face")
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB"):
        detector.detect(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB"):
        detector.detect(np.zeros((8, 8, 3), np.float32))


def test_a_face_too_large_for_the_box_detector_is_found_by_the_whole_image_mesh(detector):
    # A 25x25 picture that is all face: the full-range detector finds no box, the second
    # stage (FaceMesh on the whole image) does; such faces have no detector box or score.
    rgb = np.ascontiguousarray(source_image("lfw:0"))
    assert detector._detect_boxes(rgb) == []
    (face,) = detector.detect(rgb)
    assert face.box is None and face.score is None
    assert C.check_face(face, 25, 25) is None
