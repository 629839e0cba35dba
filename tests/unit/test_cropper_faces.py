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


def _backdrop() -> np.ndarray:
    """A blurred natural background (skimage coffee), like the benchmark's canvases."""
    import cv2
    from skimage import data

    return cv2.GaussianBlur(cv2.resize(data.coffee(), (CANVAS_W, CANVAS_H)), (0, 0), 3)


BACKDROP = _backdrop()


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
    assert set(a.timings_ms) == {"decode", "detect", "check", "crop", "encode", "total"}
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
        self.scanned: list[int] = []

    def detect(self, rgb):
        self.seen.append(rgb)
        return []

    def scan(self, rgb, *, top=0, wanted=None):
        self.scanned.append(top)
        return []


def test_the_detector_receives_rgb_not_bgr():
    arr = np.zeros((40, 30, 3), np.uint8)
    arr[..., 0] = 250  # pure red
    fake = RecordingDetector()
    Cropper(fake).crop(png_bytes(arr), "no_face")
    (rgb,) = fake.seen
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert tuple(rgb[0, 0]) == (250, 0, 0)
    assert fake.scanned == [12 - 4]  # the output check: kept rows [12, 40) plus a 4-row band


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


# --------------------------------------------------------------------------- small and secondary faces


def small_face(
    original_landmarks, source: str, face_h: float, centre: tuple[float, float], angle: float = 0.0
) -> Placement:
    """A placement of `source` whose face is `face_h` px tall (forehead to chin) with the
    centre of its landmarks at `centre`: a person far from the camera (full-body shot)."""
    lm = original_landmarks(source)
    scale = face_h / C.Face(landmarks=lm).height
    width = source_image(source).shape[1] * scale
    at_origin = Placement(source, center=(0.0, 0.0), width=width, angle=angle).map_points(lm).mean(axis=0)
    return Placement(source, center=(centre[0] - at_origin[0], centre[1] - at_origin[1]), width=width, angle=angle)


def faces_in_upload(detector, result: CropResult) -> list[C.Face]:
    """An independent look at what will be uploaded: the whole-image pass and the small-face
    scan, trustworthy faces only."""
    rgb = decode(result.upload_png).rgb
    found = detector.detect(rgb) + detector.scan(rgb)
    return [f for f in found if C.check_face(f, rgb.shape[1], rgb.shape[0]) is None]


# (source, face height px, face centre, roll): alone on a full-body canvas, below the 30 %
# fallback row, so a miss would leave the face in the upload.
SMALL_ALONE = {
    "astronaut-60": ("astronaut", 60, (400, 600), 0),
    "grace-hopper-60-tilted": ("grace_hopper", 60, (500, 700), 20),
    "camera-60-tilted": ("camera", 60, (450, 700), -20),
    "astronaut-90-half-outside-left": ("astronaut", 90, (0.25 * 90, 650), 0),
    "grace-hopper-120-outside-right": ("grace_hopper", 120, (832 - 0.2 * 120, 640), 10),
    "camera-120": ("camera", 120, (420, 560), 0),
}


@pytest.mark.parametrize("name", SMALL_ALONE)
def test_a_small_face_alone_on_a_full_body_canvas_is_cut_by_its_landmarks(cropper, detector, original_landmarks, name):
    source, face_h, centre, angle = SMALL_ALONE[name]
    placement = small_face(original_landmarks, source, face_h, centre, angle)
    f = expected_face(placement, original_landmarks)
    png = face_png([placement], background=BACKDROP)

    no_face = cropper.crop(png, "no_face")
    d = no_face.decision
    assert d.face_found and d.mode_used == "no_face" and not d.needs_manual_crop
    assert d.output_check in ("passed", "moved")
    chin = f.y(C.FACE_OVAL).max()
    assert chin - 1 <= d.cut_y <= chin + 0.25 * face_h, (d.cut_y, chin)
    assert faces_in_upload(detector, no_face) == []

    chin_crop = cropper.crop(png, "chin").decision
    assert chin_crop.face_found and chin_crop.mode_used == "chin"
    lips = f.y(C.LIPS).max()
    assert lips - 0.05 * face_h <= chin_crop.cut_y < f.point(C.CHIN)[1], (chin_crop.cut_y, lips)


def test_a_small_face_below_a_large_one_is_the_lowest_and_the_large_one_goes(cropper, detector, original_landmarks):
    big = Placement(center=(300, 330), width=700)  # face ~145 px, chin near row 290
    small = small_face(original_landmarks, "grace_hopper", 70, (640, 760), -10)
    f_big, f_small = expected_face(big, original_landmarks), expected_face(small, original_landmarks)
    png = face_png([big, small], background=BACKDROP)

    no_face = cropper.crop(png, "no_face")
    d = no_face.decision
    assert f_small.y(C.FACE_OVAL).max() - 1 <= d.cut_y <= f_small.y(C.FACE_OVAL).max() + 0.25 * 70
    assert faces_in_upload(detector, no_face) == []

    chin = cropper.crop(png, "chin").decision
    assert f_small.y(C.LIPS).max() - 0.05 * 70 <= chin.cut_y < f_small.point(C.CHIN)[1]
    assert chin.cut_y > f_big.y(C.FACE_OVAL).max()  # the large face is removed entirely


@pytest.mark.parametrize("mode", ["chin", "lips_only"])
def test_a_small_face_beside_the_lowest_one_is_removed_entirely(cropper, original_landmarks, mode):
    # A 90 px face beside the persona whose chin lies between the persona's mode cut and her
    # chin: the persona is the lowest face, and her mode cut alone would halve the small one.
    persona = Placement(center=(300, 330), width=900)
    f_persona = expected_face(persona, original_landmarks)
    target = (C.face_cut(f_persona, mode)[0] + f_persona.y(C.FACE_OVAL).max()) / 2
    probe = expected_face(small_face(original_landmarks, "astronaut", 90, (680, 0)), original_landmarks)
    small = small_face(original_landmarks, "astronaut", 90, (680, target - probe.y(C.FACE_OVAL).max()))
    f_small = expected_face(small, original_landmarks)
    assert C.face_cut(f_persona, mode)[0] < f_small.y(C.FACE_OVAL).max() < f_persona.y(C.FACE_OVAL).max()
    d = cropper.crop(face_png([persona, small], background=BACKDROP), mode).decision
    assert d.faces == 2
    assert d.cut_y >= f_small.y(C.FACE_OVAL).max() - 1  # the small face is removed entirely
    assert d.cut_y < f_persona.point(C.CHIN)[1]  # the persona still keeps her chin


class MissesSmallFaces:
    """The real detector whose first pass misses every face under `min_px` tall (what today's
    whole-frame pass does with a 60-80 px face); the output check's scan is the real one."""

    def __init__(self, real: FaceDetector, min_px: float):
        self.real, self.min_px = real, min_px

    def detect(self, rgb):
        return [f for f in self.real.detect(rgb) if f.landmarks is not None and f.height >= self.min_px]

    def scan(self, rgb, *, top=0, wanted=None):
        return self.real.scan(rgb, top=top, wanted=wanted)


@pytest.mark.parametrize("mode", CROP_MODES)
def test_the_output_check_catches_a_face_the_first_pass_missed(detector, original_landmarks, mode):
    big = Placement(center=(300, 330), width=700)
    missed = small_face(original_landmarks, "astronaut", 110, (620, 800), 12)
    f_missed = expected_face(missed, original_landmarks)
    png = face_png([big, missed], background=BACKDROP)
    blind = MissesSmallFaces(detector, min_px=130)
    assert len(blind.detect(decode(png).rgb)) == 1  # the first pass sees the big face only

    unchecked = Cropper(blind, check=False).crop(png, mode).decision
    assert unchecked.cut_y < f_missed.y(C.IDENTITY_POINTS).min()  # without the check: in the upload
    assert unchecked.output_check == "skipped"

    result = Cropper(blind).crop(png, mode)
    d = result.decision
    assert (d.output_check, d.check_faces) == ("moved", 1)
    assert d.faces == 2
    assert_cut_matches(mode, d.cut_y, f_missed)  # the missed face is now the lowest, cut by the mode
    payload = result.to_cropped_payload("elena/2_cropped/x.png")
    assert (payload.output_check, payload.output_check_faces) == ("moved", 1)
    if mode == "no_face":
        assert faces_in_upload(detector, result) == []


def test_no_false_faces_on_the_backdrops_and_no_face_images(cropper):
    for name, png in {**no_face_pngs(), "backdrop": png_bytes(BACKDROP)}.items():
        d = cropper.crop(png, "no_face").decision
        assert (d.mode_used, d.cut_y, d.output_check, d.check_faces) == ("fallback", FALLBACK_CUT, "passed", 0), name


def test_scan_maps_tile_faces_back_to_image_pixels_and_honours_top_and_wanted(detector, original_landmarks):
    # What FakeScan (test_crop_geometry) promises, on the real scanner: faces in image pixels
    # (tile and edge-padding offsets undone), only rows below `top`, meshes only when wanted.
    upper = small_face(original_landmarks, "astronaut", 80, (420, 300))
    at_edge = small_face(original_landmarks, "grace_hopper", 70, (0.3 * 70, 900), 10)  # in the grey pad's reach
    rgb = canvas([upper, at_edge], background=BACKDROP)
    f_upper, f_edge = expected_face(upper, original_landmarks), expected_face(at_edge, original_landmarks)

    def trusted(faces):  # what the check acts on (a box-only hit needs score >= 0.8; none here)
        return [f for f in faces if C.check_face(f, CANVAS_W, CANVAS_H) is None or f.score >= C.BOX_ONLY_MIN_SCORE]

    both = trusted(detector.scan(rgb))
    assert len(both) == 2
    for found, truth in zip(both, (f_upper, f_edge)):  # sorted top to bottom
        assert C.check_face(found, CANVAS_W, CANVAS_H) is None
        assert abs(found.y(C.FACE_OVAL).max() - truth.y(C.FACE_OVAL).max()) <= 0.08 * truth.height
        assert abs(found.point(C.NOSE_TIP)[0] - truth.point(C.NOSE_TIP)[0]) <= 0.08 * truth.height
        assert found.box is not None and found.score >= 0.5

    (lower,) = trusted(detector.scan(rgb, top=800))
    assert lower.box[1] > 800 and lower.landmarks is not None
    assert all(f.box[3] > 800 for f in detector.scan(rgb, top=800))  # nothing from above `top`

    # Unwanted boxes are dropped before any mesh is fitted to them.
    assert [f.box[1] > 800 for f in trusted(detector.scan(rgb, wanted=lambda box: box[1] > 800))] == [True]
