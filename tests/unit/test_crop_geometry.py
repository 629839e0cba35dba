"""Crop geometry on synthetic 468-point meshes: no MediaPipe, exact expected rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaultline.events import CROP_MODES
from vaultline.domain import crop as C
from vaultline.domain.crop import Face, decide_cut

W, H = 832, 1216

# A level face in units of its height, origin at the forehead top (lm 10), y down. Rows follow
# the astronaut measurements in research/crop.md §1 (10 -> 0, nose bottom 0.605, lip top
# 0.645, lower lip 0.80, chin 1.0).
_TEMPLATE: dict[int, tuple[float, float]] = {
    168: (0, 0.29), 6: (0, 0.34), 197: (0, 0.40), 195: (0, 0.46), 5: (0, 0.52), 4: (0, 0.55),
    1: (0, 0.58), 19: (0, 0.59), 94: (0, 0.60), 2: (0, 0.605), 98: (-0.07, 0.59), 327: (0.07, 0.59),
    64: (-0.08, 0.57), 294: (0.08, 0.57),
    61: (-0.15, 0.70), 291: (0.15, 0.70), 185: (-0.11, 0.665), 409: (0.11, 0.665),
    40: (-0.07, 0.648), 270: (0.07, 0.648), 39: (-0.04, 0.645), 269: (0.04, 0.645),
    37: (-0.02, 0.65), 267: (0.02, 0.65), 0: (0, 0.66),
    78: (-0.13, 0.70), 308: (0.13, 0.70), 191: (-0.1, 0.69), 415: (0.1, 0.69), 80: (-0.07, 0.69),
    310: (0.07, 0.69), 81: (-0.04, 0.69), 311: (0.04, 0.69), 82: (-0.02, 0.69), 312: (0.02, 0.69),
    13: (0, 0.69), 95: (-0.1, 0.71), 324: (0.1, 0.71), 88: (-0.07, 0.71), 318: (0.07, 0.71),
    178: (-0.04, 0.71), 402: (0.04, 0.71), 87: (-0.02, 0.71), 317: (0.02, 0.71), 14: (0, 0.71),
    146: (-0.12, 0.74), 375: (0.12, 0.74), 91: (-0.09, 0.77), 321: (0.09, 0.77),
    181: (-0.06, 0.79), 405: (0.06, 0.79), 84: (-0.03, 0.80), 314: (0.03, 0.80), 17: (0, 0.80),
}  # fmt: skip


def template() -> np.ndarray:
    pts = np.tile([0.0, 0.5], (C.MESH_POINTS, 1))  # unnamed points: face centre
    for k, idx in enumerate(C.FACE_OVAL):  # ellipse, clockwise from the top (10) to 152 at k=18
        a = 2 * math.pi * k / len(C.FACE_OVAL)
        pts[idx] = (0.4 * math.sin(a), 0.5 - 0.5 * math.cos(a))
    for eye, cx in ((C.RIGHT_EYE, -0.2), (C.LEFT_EYE, 0.2)):
        for k, idx in enumerate(eye):
            a = 2 * math.pi * k / len(eye)
            pts[idx] = (cx + 0.07 * math.cos(a), 0.36 + 0.025 * math.sin(a))
    for idx in C.NOSE:
        if idx not in _TEMPLATE:
            pts[idx] = (0.0, 0.45)
    for idx, xy in _TEMPLATE.items():
        pts[idx] = xy
    return pts


def face(
    cx: float = 416, top: float = 100, h: float = 200, roll: float = 0.0, score: float | None = 0.9, box: bool = True
) -> Face:
    """A synthetic face `h` px tall, forehead top at (cx, top) before rolling `roll` degrees
    (positive = clockwise on screen, the image-right eye goes down) about the face centre."""
    pts = template() * h
    centre = np.array([0.0, 0.5 * h])
    a = math.radians(roll)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = (pts - centre) @ rot.T + centre + (cx, top)
    mesh_box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    return Face(landmarks=pts, box=mesh_box if box else None, score=score if box else None)


def test_template_is_a_valid_face():
    f = face()
    assert C.check_face(f, W, H) is None
    assert f.height == pytest.approx(200)
    assert f.roll_deg == pytest.approx(0, abs=1e-9)
    assert face(roll=12).roll_deg == pytest.approx(12)


# --------------------------------------------------------------------------- one face per mode


def test_no_face_cuts_below_the_whole_oval_plus_margin():
    d = decide_cut([face(top=100, h=200)], W, H, "no_face")
    # chin at 300, margin 0.04 * 200 = 8
    assert d.cut_y == 308
    assert (d.mode_used, d.face_found, d.faces, d.needs_manual_crop) == ("no_face", True, 1, False)
    assert d.box == (0, 308, W, H)
    assert d.confidence == 0.9
    assert d.fallback_reason is None


def test_chin_cuts_below_the_lower_lip_and_keeps_the_chin():
    f = face(top=100, h=200)
    d = decide_cut([f], W, H, "chin")
    lower_lip = f.y(C.LIPS).max()  # 260
    assert d.cut_y == math.ceil(lower_lip + 0.02 * 200) == 264
    assert lower_lip < d.cut_y < f.point(C.CHIN)[1]


def test_lips_only_cuts_between_nose_bottom_and_upper_lip_top():
    f = face(top=100, h=200)
    d = decide_cut([f], W, H, "lips_only")
    nose_bottom = f.y(C.NOSE_BOTTOM).max()  # 221
    lip_top = f.y(C.UPPER_OUTER_LIP).min()  # 229 (cupid's bow peak, not lm 0 at 232)
    assert (nose_bottom, lip_top) == (pytest.approx(221), pytest.approx(229))
    assert d.cut_y == 225
    assert d.fallback_reason is None and d.mode_used == "lips_only"


def test_cut_is_rounded_down_the_image_never_up():
    d = decide_cut([face(top=100.2, h=200)], W, H, "no_face")
    assert d.cut_y == 309  # 308.2 -> 309: the row at 308 still holds chin/margin pixels


# --------------------------------------------------------------------------- tilted heads


def test_no_face_on_a_tilted_head_uses_the_lowest_oval_point_not_lm_152():
    f = face(top=200, h=200, roll=30)
    d = decide_cut([f], W, H, "no_face")
    oval_max = f.y(C.FACE_OVAL).max()
    assert oval_max > f.point(C.CHIN)[1] + 5  # the jaw beside the chin is lower than lm 152
    assert d.cut_y == math.ceil(oval_max + 0.04 * 200)


@pytest.mark.parametrize("roll", [16, -20, 40])
def test_lips_only_beyond_15_degrees_falls_back_to_just_below_the_nose(roll):
    f = face(top=200, h=200, roll=roll)
    d = decide_cut([f], W, H, "lips_only")
    assert d.mode_used == "lips_only"  # still face-based, not the 30 % rule
    assert d.fallback_reason is not None and "roll" in d.fallback_reason
    # Every nose and eye point is removed.
    assert d.cut_y >= f.y(C.IDENTITY_POINTS).max()
    assert d.cut_y == math.ceil(f.y(C.IDENTITY_POINTS).max())
    assert not d.needs_manual_crop


def test_lips_only_at_10_degrees_still_cuts_between_nose_and_lips():
    f = face(top=200, h=200, roll=10)
    d = decide_cut([f], W, H, "lips_only")
    assert d.fallback_reason is None
    assert f.y(C.NOSE).max() <= d.cut_y <= f.y(C.UPPER_OUTER_LIP).min()


def test_lips_only_when_the_nose_reaches_the_lip_line_falls_back():
    f = face(top=200, h=200)
    f.landmarks[98] = (f.landmarks[98][0], 200 + 0.66 * 200)  # a nose wing below the lip top
    d = decide_cut([f], W, H, "lips_only")
    assert d.fallback_reason is not None and "nose reaches below" in d.fallback_reason
    assert d.cut_y == math.ceil(200 + 0.66 * 200)


@pytest.mark.parametrize("mode", CROP_MODES)
@pytest.mark.parametrize("roll", [-70, -35, -12, 0, 8, 25, 55, 180])
def test_privacy_invariant_eyes_and_nose_are_always_removed(mode, roll):
    f = face(top=300, h=220, roll=roll)
    d = decide_cut([f], W, H, mode)
    assert d.face_found
    assert d.cut_y >= f.y(C.IDENTITY_POINTS).max()
    if mode == "no_face":
        assert d.cut_y >= f.y(C.FACE_OVAL).max()


# --------------------------------------------------------------------------- several faces


@pytest.mark.parametrize("mode", CROP_MODES)
def test_several_faces_take_the_lowest_cut_so_every_face_is_cut(mode):
    upper = face(cx=250, top=100, h=200, score=0.95)
    lower = face(cx=600, top=500, h=180, score=0.7)
    d = decide_cut([upper, lower], W, H, mode)
    alone = decide_cut([lower], W, H, mode)
    assert d.cut_y == alone.cut_y  # the lower face decides
    assert d.cut_y > upper.y(C.FACE_OVAL).max()  # the upper face is gone entirely
    assert d.faces == 2
    assert d.confidence == 0.7  # the face that set the cut
    assert d.face_box == lower.box
    assert decide_cut([lower, upper], W, H, mode) == d  # order does not matter


def test_every_face_counts_however_small():
    big = face(top=100, h=300)
    small = face(cx=700, top=800, h=60)  # a 60 px face lower in the frame: a person too
    d = decide_cut([big, small], W, H, "no_face")
    assert d.cut_y == math.ceil(small.y(C.FACE_OVAL).max() + 0.04 * 60) == 863
    assert d.faces == 2 and d.face_box == small.box


@pytest.mark.parametrize("mode", ["chin", "lips_only"])
def test_only_the_lowest_face_is_cut_by_the_mode_the_others_are_removed_entirely(mode):
    # Side by side: the left face's chin (300) is above the right face's (320), but the
    # left face's no_face cut (308) lies below the right face's lips (~300): it must win.
    left = face(cx=250, top=100, h=200)
    right = face(cx=600, top=120, h=200)
    d = decide_cut([left, right], W, H, mode)
    assert d.cut_y == math.ceil(max(C.no_face_cut(left), C.face_cut(right, mode)[0])) == 308
    assert d.cut_y >= left.y(C.FACE_OVAL).max()  # the upper face is gone entirely
    assert d.cut_y < right.point(C.CHIN)[1]  # the lowest keeps what its mode allows
    assert d.partial_face == right.box
    # Alone, the left face would have kept its chin.
    assert decide_cut([left], W, H, mode).cut_y < left.point(C.CHIN)[1]


def test_a_box_without_landmarks_is_removed_entirely():
    f = face(top=100, h=200)
    box = (600.0, 400.0, 660.0, 470.0)  # lower than the mesh face
    d = decide_cut([f], W, H, "chin", remove=[box])
    assert d.cut_y == math.ceil(470 + 0.15 * 70) == 481
    assert d.partial_face is None  # the lowest "face" is a box: nothing is cut by the mode
    assert "removed entirely" in d.fallback_reason
    assert d.faces == 2 and d.face_box == box


def test_a_second_face_of_similar_size_does_move_the_cut():
    big = face(top=100, h=300)
    second = face(cx=650, top=600, h=100)  # 33 % of the largest
    d = decide_cut([big, second], W, H, "no_face")
    assert d.cut_y == math.ceil(600 + 100 + 4)


# --------------------------------------------------------------------------- too little left


def test_cut_leaving_less_than_a_quarter_needs_a_manual_crop():
    f = face(top=700, h=300)  # no_face cut 1012 would leave 204 px of 1216
    d = decide_cut([f], W, H, "no_face")
    keep = math.ceil(0.25 * H)  # 304
    assert d.needs_manual_crop
    assert d.cut_y == H - keep == 912
    assert d.mode_used == "no_face" and d.face_found
    assert "minimum" in d.fallback_reason and "1012" in d.fallback_reason


def test_chin_below_the_frame_needs_a_manual_crop():
    f = face(top=1000, h=300)  # nose inside the frame, chin at 1300 > 1216
    assert C.check_face(f, W, H) is None  # a real face, only cut off at the bottom
    d = decide_cut([f], W, H, "no_face")
    assert d.needs_manual_crop and d.cut_y == 912


def test_forehead_above_the_frame_is_still_a_face():
    f = face(top=-60, h=200)
    d = decide_cut([f], W, H, "no_face")
    assert d.face_found and d.cut_y == 148


# --------------------------------------------------------------------------- fallback and gates


def test_no_face_takes_the_30_percent_fallback():
    d = decide_cut([], W, H, "no_face")
    assert d.cut_y == round(0.30 * H) == 365
    assert (d.mode_used, d.face_found, d.faces, d.confidence) == ("fallback", False, 0, None)
    assert d.fallback_reason.startswith("no face detected")
    assert not d.needs_manual_crop
    assert d.requested_mode == "no_face"


def _scrambled() -> Face:
    """Points scattered at random over the face box: a mesh fitted to nothing."""
    f = face()
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = f.box
    lm = rng.uniform((x0, y0), (x1, y1), size=(C.MESH_POINTS, 2))
    return Face(landmarks=lm, box=f.box, score=0.9)


def _mutated(**points) -> Face:
    f = face(top=100, h=200)
    lm = f.landmarks.copy()
    for name, (idx, xy) in points.items():
        lm[idx] = xy
    return Face(landmarks=lm, box=f.box, score=f.score)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (_scrambled(), "anatomical order"),
        (_mutated(chin=(C.CHIN, (416, 150))), "anatomical order"),  # chin between the eyes
        (_mutated(mouth=(C.UPPER_LIP_INNER, (416, 160))), "anatomical order"),  # mouth above the nose
        (Face(landmarks=face().landmarks, box=(600, 900, 700, 1000), score=0.9), "detector box"),
        (Face(landmarks=np.full((C.MESH_POINTS, 2), np.nan), box=None), "NaN"),
        (Face(landmarks=np.zeros((100, 2)), box=None), "shape"),
        (face(cx=-200), "outside"),
        (face(h=5), "below 8 px"),
        (Face(landmarks=None, box=(300, 100, 500, 300), score=0.8), "without a landmark mesh"),
    ],
    ids=["scrambled", "chin-up", "mouth-up", "box", "nan", "shape", "outside", "tiny", "no-mesh"],
)
def test_sanity_gates_reject_untrustworthy_meshes(bad, reason):
    assert reason in C.check_face(bad, W, H)
    d = decide_cut([bad], W, H, "no_face")
    assert d.mode_used == "fallback" and d.cut_y == 365 and not d.face_found
    assert "no trustworthy face" in d.fallback_reason
    assert any(reason in n for n in d.notes)


def test_a_rejected_face_below_the_fallback_row_needs_a_manual_crop():
    low_box = Face(landmarks=None, box=(300, 500, 450, 650), score=0.8)  # 30 % cut leaves it visible
    d = decide_cut([low_box], W, H, "no_face")
    assert d.mode_used == "fallback" and d.needs_manual_crop
    high_box = Face(landmarks=None, box=(300, 100, 450, 250), score=0.8)  # removed by the 30 % cut
    assert not decide_cut([high_box], W, H, "no_face").needs_manual_crop


def test_a_good_face_wins_over_a_rejected_one():
    d = decide_cut([_scrambled(), face(top=300, h=200)], W, H, "no_face")
    assert d.face_found and d.faces == 1 and d.cut_y == 508
    assert any("face 0 rejected" in n for n in d.notes)


def test_whole_image_mesh_without_box_or_score_is_usable():
    d = decide_cut([face(box=False)], W, H, "chin")
    assert d.face_found and d.confidence is None and d.face_box is not None


def test_unknown_mode_and_bad_size_raise():
    with pytest.raises(ValueError, match="unknown crop mode 'eyes'"):
        decide_cut([], W, H, "eyes")
    with pytest.raises(ValueError, match="positive"):
        decide_cut([], 0, H, "no_face")


# --------------------------------------------------------------------------- the output check


class FakeScan:
    """The check's scanner: returns the given faces (image pixels) round by round and records
    the region tops it was asked to look at."""

    def __init__(self, *rounds):
        self.rounds = list(rounds)
        self.tops: list[int] = []

    def __call__(self, top, wanted):
        self.tops.append(top)
        faces = self.rounds.pop(0) if self.rounds else []
        # Like the real scanner: only faces in the region, and only the wanted ones.
        return [f for f in faces if (f.box or f.mesh_box)[3] > top and wanted(f.box or f.mesh_box)]


def test_a_clean_check_passes_and_leaves_the_cut():
    scan = FakeScan()
    d = C.checked_cut([face(top=100, h=200)], W, H, "no_face", scan)
    assert (d.cut_y, d.output_check, d.check_faces) == (308, "passed", 0)
    assert scan.tops == [308 - round(0.10 * H)]  # the kept part plus a band above the cut


def test_a_face_the_first_pass_missed_moves_the_no_face_cut_below_it_and_the_check_repeats():
    persona = face(top=100, h=200)
    missed = face(cx=650, top=600, h=80)
    scan = FakeScan([missed], [])
    d = C.checked_cut([persona], W, H, "no_face", scan)
    assert d.cut_y == math.ceil(missed.y(C.FACE_OVAL).max() + 0.04 * 80) == 684
    assert (d.output_check, d.check_faces, d.needs_manual_crop) == ("moved", 1, False)
    assert scan.tops == [308 - 122, 684 - 122]  # checked again on the new kept part


@pytest.mark.parametrize("mode", ["chin", "lips_only"])
def test_chin_and_lips_finding_the_lowest_face_again_is_not_a_finding(mode):
    persona = face(top=100, h=200)
    scan = FakeScan([persona])  # the scanner sees the persona's lower face in the band
    d = C.checked_cut([persona], W, H, mode, scan)
    assert d.output_check == "passed" and d.cut_y == decide_cut([persona], W, H, mode).cut_y


@pytest.mark.parametrize("mode", ["chin", "lips_only"])
def test_chin_and_lips_a_second_face_left_visible_is_removed_entirely(mode):
    persona = face(cx=300, top=100, h=200)  # chin cut 264, lips_only 225
    second = face(cx=650, top=180, h=90)  # beside it, chin at 270: halved by the first cut
    scan = FakeScan([second], [])
    d = C.checked_cut([persona], W, H, mode, scan)
    assert d.output_check == "moved" and d.check_faces == 1
    assert d.cut_y == math.ceil(C.no_face_cut(second)) == 274
    assert d.cut_y >= second.y(C.FACE_OVAL).max()
    assert d.partial_face == persona.box  # the persona is still the one cut by the mode


def test_a_lower_face_found_by_the_check_becomes_the_lowest_one():
    persona = face(cx=300, top=100, h=200)
    lower = face(cx=600, top=500, h=100)
    d = C.checked_cut([persona], W, H, "chin", FakeScan([lower], []))
    assert d.cut_y == math.ceil(C.chin_cut(lower)) and d.partial_face == lower.box
    assert d.cut_y > persona.y(C.FACE_OVAL).max()  # the persona is now removed entirely


def test_too_little_left_after_moving_flags_a_manual_crop():
    missed = face(cx=600, top=900, h=120)  # its no_face cut would leave ~190 px
    d = C.checked_cut([face(top=100, h=200)], W, H, "no_face", FakeScan([missed]))
    assert (d.output_check, d.needs_manual_crop, d.check_faces) == ("needs_manual_crop", True, 1)
    assert d.cut_y == H - math.ceil(0.25 * H)


def test_a_box_only_finding_counts_when_the_detector_is_sure():
    sure = Face(landmarks=None, box=(500.0, 600.0, 560.0, 670.0), score=0.9)
    d = C.checked_cut([face(top=100, h=200)], W, H, "no_face", FakeScan([sure], []))
    assert d.cut_y == math.ceil(670 + 0.15 * 70) and d.output_check == "moved"
    unsure = Face(landmarks=None, box=(500.0, 600.0, 560.0, 670.0), score=0.6)
    d = C.checked_cut([face(top=100, h=200)], W, H, "no_face", FakeScan([unsure], []))
    assert d.cut_y == 308 and d.output_check == "passed"


def test_the_check_runs_on_a_fallback_crop_too():
    missed = face(cx=400, top=500, h=90)
    d = C.checked_cut([], W, H, "chin", FakeScan([missed], []))
    assert d.face_found and d.mode_used == "chin" and d.output_check == "moved"
    assert d.cut_y == math.ceil(C.chin_cut(missed))


def test_a_face_that_keeps_coming_back_ends_in_a_manual_crop():
    missed = face(cx=600, top=500, h=100)
    endless = [Face(landmarks=None, box=(600.0, 560.0 + 60 * i, 660.0, 640.0 + 60 * i), score=0.9) for i in range(5)]
    d = C.checked_cut([face(top=100, h=200)], W, H, "no_face", FakeScan([missed], *([b] for b in endless)))
    assert d.output_check == "needs_manual_crop" and d.needs_manual_crop
    assert "after 3 moves" in d.fallback_reason


def test_no_scan_or_a_manual_crop_already_skips_the_check():
    assert C.checked_cut([face()], W, H, "no_face", None).output_check == "skipped"
    scan = FakeScan()
    d = C.checked_cut([face(top=700, h=300)], W, H, "no_face", scan)
    assert d.needs_manual_crop and d.output_check == "skipped" and scan.tops == []


def test_merge_boxes_keeps_one_box_per_face():
    a, inside, other = (100.0, 100.0, 200.0, 200.0), (120.0, 130.0, 190.0, 195.0), (400.0, 100.0, 500.0, 200.0)
    assert C.merge_boxes([(inside, 0.6), (a, 0.9), (other, 0.7)]) == [(a, 0.9), (other, 0.7)]
