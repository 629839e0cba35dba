"""Face-aware crop geometry: which row to cut a portrait at, per crop mode. Pure (numpy only).

The crop always keeps the rows BELOW the cut: output = image rows [cut_y, H). Coordinates are
pixels with the origin top-left and y growing downwards. Landmarks are MediaPipe Face Mesh
points (468-point topology) already mapped to image pixels by the detector adapter; the index
sets and the rules come from /work/shared/research/crop.md (sections 0.2, 1 and 4).

Modes (one face):
  no_face    cut = max(y over FACE_OVAL) + NO_FACE_MARGIN * face_h   (whole face removed; the
             oval, not only lm 152, because on a tilted head the lowest point is 148/176)
  chin       cut = max(y over LIPS) + CHIN_MARGIN * face_h           (lips removed, chin kept)
  lips_only  cut = midway between the nose bottom and the top of the upper lip (nose removed,
             lips kept). With |roll| > MAX_LIPS_ROLL_DEG, or when no row separates nose and
             lips, the cut goes just below the nose instead and `fallback_reason` says why.
  fallback   no trustworthy face: cut = round(0.30 * H).

Privacy invariant, all modes: the cut is never above the lowest eye or nose point of any face
the decision uses (eyes and nose identify a person; lips and chin are what the modes may keep).

Several faces: the LOWEST face (the one whose face oval reaches furthest down; usually the
persona) is cut by the requested mode; every other face is removed entirely (its `no_face`
cut), whatever the mode. The decision takes the lowest of all these rows (largest cut_y), so no
face shows more than the mode allows and faces higher up are gone. Every face counts, however
small: a 60 px face in the background is a recognisable person too.

Faces without trustworthy landmarks (a detector box only, or a mesh the sanity gates reject)
that the output check finds in the kept part are passed as `remove` boxes: they cannot be cut
by a mode, so they are removed entirely (box bottom + BOX_MARGIN x box height).

Too little left: if the cut would leave less than MIN_KEEP_FRACTION of the height, the cut is
moved up to keep exactly that much and `needs_manual_crop` is set: a human has to crop it.

Output check (checked_cut): after deciding, the kept rows (plus a band above the cut) are
scanned again by a pass that finds small faces; a face found there that the cut leaves visible
joins the decision and the check repeats. The verdict is `output_check` on the decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from vaultline.events import CROP_MODES

# --------------------------------------------------------------------------- landmark indices
# Indices of the 468-point MediaPipe face mesh (the same in the 478-point refined mesh).
# "Right"/"left" are the subject's: the right eye appears on the image's left.

MESH_POINTS = 468

FOREHEAD_TOP = 10  # top of the face oval, midline
CHIN = 152  # bottom of the chin, midline (lowest point only for a level head)
NOSE_TIP = 1
NOSE_BOTTOM = (2, 94)  # subnasale; lm 2 is the lowest nose point on a level head
UPPER_LIP_INNER = 13  # lower edge of the upper lip
LOWER_LIP_INNER = 14  # upper edge of the lower lip
LOWER_LIP_BOTTOM = 17

FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
LIPS: tuple[int, ...] = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
    191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409,
    415,
)  # fmt: skip
# Top contour of the upper lip; its minimum y is the lip top (the cupid's-bow peaks 185/40/39
# sit ~3 px above lm 0, so take the min over the contour, not lm 0).
UPPER_OUTER_LIP: tuple[int, ...] = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER_LIP: tuple[int, ...] = (146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
NOSE: tuple[int, ...] = (
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326,
    327, 344, 440,
)  # fmt: skip
RIGHT_EYE: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYE: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
# Every point the privacy invariant keeps above the cut in every mode.
IDENTITY_POINTS: tuple[int, ...] = tuple(sorted(set(NOSE) | set(RIGHT_EYE) | set(LEFT_EYE)))

# --------------------------------------------------------------------------- tunables

NO_FACE_MARGIN = 0.04  # x face height below the lowest oval point (research: 0.03-0.05)
CHIN_MARGIN = 0.02  # x face height below the lowest lip point (~3 px on a 172 px face)
MAX_LIPS_ROLL_DEG = 15.0  # beyond this no horizontal line separates nose and lips (measured)
FALLBACK_FRACTION = 0.30  # no trustworthy face: remove the top 30 %
MIN_KEEP_FRACTION = 0.25  # a crop must keep at least this much of the height
BOX_MARGIN = 0.15  # a box-only face is removed to this x box height below its box (the
# full-range box ends 1-7 px above the chin on a 172 px face, research §2)
CHECK_BAND_FRACTION = 0.10  # the output check also looks at this x H rows above the cut, so a
# face the cut halves is seen whole
CHECK_TOLERANCE = 0.05  # x box height: a found box may end this far below the cut and still
# count as removed (detector boxes are not pixel-exact)
BOX_ONLY_MIN_SCORE = 0.8  # a found face without a trustworthy mesh counts from this score
# (false positives measured at 0.51-0.73 on a coat and a gloved hand; the real 60-120 px faces
# of the tests all got a trustworthy mesh)
MATCH_IOU = 0.3  # a found box is the same face as a known one at this IoU ...
MATCH_CONTAINMENT = 0.6  # ... or when this much of the smaller box lies inside the other
MIN_BOX_IOU = 0.35  # mesh bbox vs detector box; 0.6-0.9 measured on the packaged faces
MIN_FACE_PX = 8.0  # a mesh shorter than this (forehead to chin) is noise


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True, eq=False)
class Face:
    """One face as the detector adapter saw it.

    landmarks: (N >= 468, 2) float array of (x, y) pixels in the image, or None when only the
        face detector found it and no mesh could be fitted (such a face cannot set a cut but
        still counts when checking whether a fallback crop leaves a face visible).
    box: the face detector's box (x0, y0, x1, y1) in pixels, None when the face came from the
        whole-image mesh pass (no detector box to compare with).
    score: the face detector's confidence in [0, 1], None without a detector box.
    """

    landmarks: np.ndarray | None
    box: Box | None = None
    score: float | None = None

    def y(self, indices: Sequence[int]) -> np.ndarray:
        assert self.landmarks is not None
        return self.landmarks[list(indices), 1]

    def point(self, index: int) -> np.ndarray:
        assert self.landmarks is not None
        return self.landmarks[index]

    @property
    def height(self) -> float:
        """Face height: distance forehead top (10) to chin (152). Equals y152 - y10 on a level
        head (research's face_h) and does not shrink when the head tilts."""
        return float(np.linalg.norm(self.point(CHIN) - self.point(FOREHEAD_TOP)))

    @property
    def mesh_box(self) -> Box:
        lm = self.landmarks
        assert lm is not None
        return (float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max()))

    @property
    def roll_deg(self) -> float:
        return roll_degrees(self.landmarks)


@dataclass(frozen=True)
class CutDecision:
    """Where to cut and why. The kept region is `box` = (0, cut_y, width, height).

    mode_used: the requested mode, or "fallback" when no trustworthy face was found.
    face_found: a trustworthy face set the cut.
    faces: trustworthy faces found (including small ones that did not move the cut).
    confidence: detector score of the face that set the cut (None: fallback, or a face from the
        whole-image mesh pass, which has no score).
    fallback_reason: set whenever the result is not the plain requested mode: the 30 % fallback,
        the lips_only roll fallback, or a cut moved up for the minimum height.
    needs_manual_crop: a human must crop this one (too little left, or a face may remain
        visible in a fallback crop).
    notes: diagnostics for logs (faces rejected by the sanity gates, removed boxes).
    """

    cut_y: int
    mode_used: str
    face_found: bool
    faces: int
    box: tuple[int, int, int, int]
    confidence: float | None
    fallback_reason: str | None
    needs_manual_crop: bool
    requested_mode: str
    face_box: Box | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # chin/lips_only: the box of the one face the mode keeps part of (the lowest face); None in
    # no_face, in the fallback, and when the lowest face had to be removed entirely.
    partial_face: Box | None = None
    # The output check (checked_cut): its verdict (one of CHECK_VERDICTS) and how many faces it
    # found that the cut had left visible. None: no check was asked for.
    output_check: str | None = None
    check_faces: int | None = None


# --------------------------------------------------------------------------- measurements


def roll_degrees(landmarks: np.ndarray | None) -> float:
    """Head roll in degrees from the line between the two eye centres: 0 for a level head,
    positive when the eye on the image's right is lower (clockwise in image coordinates)."""
    if landmarks is None:
        return 0.0
    right = landmarks[list(RIGHT_EYE)].mean(axis=0)  # image left
    left = landmarks[list(LEFT_EYE)].mean(axis=0)  # image right
    dx, dy = left - right
    return math.degrees(math.atan2(dy, dx))


def box_area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def same_face(a: Box, b: Box) -> bool:
    """Two boxes of one face: enough IoU, or the smaller one mostly inside the larger (a tile
    may see half a face; the short- and full-range models frame a face differently)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    smaller = min(box_area(a), box_area(b))
    return box_iou(a, b) >= MATCH_IOU or (smaller > 0 and inter / smaller >= MATCH_CONTAINMENT)


def merge_boxes(found: Sequence[tuple[Box, float]]) -> list[tuple[Box, float]]:
    """One (box, score) per face: of the boxes that show the same face (same_face), several
    tiles and two models, the highest-scoring one is kept (non-maximum suppression)."""
    kept: list[tuple[Box, float]] = []
    for box, score in sorted(found, key=lambda bs: -bs[1]):
        if not any(same_face(k, box) for k, _ in kept):
            kept.append((box, score))
    return kept


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------- sanity gates


def check_face(face: Face, width: int, height: int) -> str | None:
    """Why this mesh cannot be trusted, or None when it passes every gate.

    Gates (research §0.3): a well-formed mesh; the nose and mouth (the part that decides every
    cut) inside the frame, while the forehead or chin may stick out; the anatomical order
    forehead < eyes < nose tip < mouth < lower lip < chin (and eyes < nose bottom < mouth)
    along the face's own axis (rotation-independent, so tilted heads pass and scrambled meshes
    do not); a plausible size; and agreement with the detector box when there is one.
    """
    lm = face.landmarks
    if lm is None:
        return "detector box without a landmark mesh"
    if lm.ndim != 2 or lm.shape[0] < MESH_POINTS or lm.shape[1] != 2:
        return f"landmark array has shape {lm.shape}, expected ({MESH_POINTS}+, 2)"
    if not np.isfinite(lm[:MESH_POINTS]).all():
        return "landmarks contain NaN or infinity"

    for name, idx in (("nose tip", NOSE_TIP), ("upper lip", UPPER_LIP_INNER), ("lower lip", LOWER_LIP_INNER)):
        x, y = lm[idx]
        if not (0 <= x < width and 0 <= y < height):
            return f"{name} at ({x:.0f}, {y:.0f}) is outside the {width}x{height} frame"

    face_h = face.height
    if face_h < MIN_FACE_PX:
        return f"face height {face_h:.1f} px is below {MIN_FACE_PX:.0f} px"

    top = lm[FOREHEAD_TOP]
    axis = (lm[CHIN] - top) / face_h  # unit vector forehead -> chin

    def along(points: np.ndarray) -> float:
        return float((points - top) @ axis)

    eyes = along(lm[list(RIGHT_EYE) + list(LEFT_EYE)].mean(axis=0))
    mouth = along(lm[[UPPER_LIP_INNER, LOWER_LIP_INNER]].mean(axis=0))
    order = [
        ("eyes", eyes),
        ("nose tip", along(lm[NOSE_TIP])),
        ("mouth", mouth),
        ("lower lip", along(lm[LOWER_LIP_BOTTOM])),
    ]
    previous_name, previous = "forehead", 0.0
    for name, t in order:
        if not previous < t < face_h:
            return (
                f"landmarks out of anatomical order: {name} is not between the {previous_name} "
                f"and the chin along the face axis"
            )
        previous_name, previous = name, t
    # The nose bottom is checked on its own: a head looking down projects the nose tip below
    # the subnasale, so "tip before bottom" is not a reliable order.
    if not eyes < along(lm[list(NOSE_BOTTOM)].mean(axis=0)) < mouth:
        return "landmarks out of anatomical order: nose bottom is not between the eyes and the mouth"

    if face.box is not None:
        iou = box_iou(face.mesh_box, face.box)
        if iou < MIN_BOX_IOU:
            return f"mesh disagrees with the detector box (IoU {iou:.2f} < {MIN_BOX_IOU})"
    return None


# --------------------------------------------------------------------------- per-face cut rows


def no_face_cut(face: Face) -> float:
    return float(face.y(FACE_OVAL).max()) + NO_FACE_MARGIN * face.height


def chin_cut(face: Face) -> float:
    return max(float(face.y(LIPS).max()) + CHIN_MARGIN * face.height, _identity_bottom(face))


def lips_only_cut(face: Face) -> tuple[float, str | None]:
    """Row between the nose and the upper lip, or (nose bottom, reason) when that band does
    not exist for this face (tilted head)."""
    nose_bottom = _identity_bottom(face)  # lowest nose/eye point; lm 2 for a level head
    lip_top = float(face.y(UPPER_OUTER_LIP).min())
    roll = face.roll_deg
    if abs(roll) > MAX_LIPS_ROLL_DEG:
        return nose_bottom, (
            f"lips_only: head roll {roll:+.1f} deg exceeds {MAX_LIPS_ROLL_DEG:.0f} deg, no "
            "horizontal line separates nose and lips; cut just below the nose (part of the "
            "upper lip removed)"
        )
    if lip_top <= nose_bottom:
        return nose_bottom, (
            f"lips_only: the nose reaches below the top of the upper lip (roll {roll:+.1f} deg); "
            "cut just below the nose (part of the upper lip removed)"
        )
    return (nose_bottom + lip_top) / 2.0, None


def _identity_bottom(face: Face) -> float:
    return float(face.y(IDENTITY_POINTS).max())


def face_cut(face: Face, mode: str) -> tuple[float, str | None]:
    """The cut row this one face asks for in `mode`, plus a reason when it had to deviate."""
    if mode == "no_face":
        return no_face_cut(face), None
    if mode == "chin":
        return chin_cut(face), None
    if mode == "lips_only":
        return lips_only_cut(face)
    raise ValueError(f"unknown crop mode {mode!r}; expected one of {', '.join(CROP_MODES)}")


# --------------------------------------------------------------------------- the decision


def fallback_cut(height: int) -> int:
    return round(FALLBACK_FRACTION * height)


def min_keep_rows(height: int) -> int:
    return max(1, math.ceil(MIN_KEEP_FRACTION * height))


def box_cut(box: Box) -> float:
    """The row that removes a face known only by its detector box."""
    return box[3] + BOX_MARGIN * (box[3] - box[1])


def decide_cut(
    faces: Sequence[Face], width: int, height: int, mode: str, *, remove: Sequence[Box] = ()
) -> CutDecision:
    """Choose the cut row for an image of `width` x `height` with the detected `faces`.

    `remove`: boxes of faces without trustworthy landmarks that must not stay visible (the
    output check passes the ones it finds in the kept part); each is removed entirely."""
    if mode not in CROP_MODES:
        raise ValueError(f"unknown crop mode {mode!r}; expected one of {', '.join(CROP_MODES)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")

    notes: list[str] = []
    trusted: list[Face] = []
    for i, face in enumerate(faces):
        reason = check_face(face, width, height)
        if reason is None:
            trusted.append(face)
        else:
            notes.append(f"face {i} rejected: {reason}")
    if remove:
        notes.append(f"{len(remove)} face box(es) without trustworthy landmarks removed entirely")

    if not trusted:
        return _fallback(faces, width, height, mode, notes, remove)

    # The lowest face is cut by the mode; every other face (and every box) is removed entirely.
    lowest = max(trusted, key=lambda f: float(f.y(FACE_OVAL).max()))
    lowest_bottom = float(lowest.y(FACE_OVAL).max())
    reason: str | None = None
    partial: Box | None = None
    if any(b[3] > lowest_bottom for b in remove):
        cut, reason = no_face_cut(lowest), (
            f"{mode}: a face without trustworthy landmarks is lower than the lowest mesh face; "
            "every face removed entirely"
        )
    else:
        cut, reason = face_cut(lowest, mode)
        if mode != "no_face":
            partial = lowest.box if lowest.box is not None else lowest.mesh_box
    rows: list[tuple[float, Face | None, Box | None]] = [(cut, lowest, None)]
    rows += [(no_face_cut(f), f, None) for f in trusted if f is not lowest]
    rows += [(box_cut(b), None, b) for b in remove]
    cut, decider, decider_box = max(rows, key=lambda r: r[0])

    # ceil: never keep a row the rule says to remove.
    cut_y = min(max(math.ceil(cut), 0), height)
    cut_y, needs_manual, reason = _keep_minimum(cut_y, height, mode, reason)

    if decider is not None:
        confidence, face_box = decider.score, decider.box if decider.box is not None else decider.mesh_box
    else:
        confidence, face_box = None, decider_box
    return CutDecision(
        cut_y=cut_y,
        mode_used=mode,
        face_found=True,
        faces=len(trusted) + len(remove),
        box=(0, cut_y, width, height),
        confidence=confidence,
        fallback_reason=reason,
        needs_manual_crop=needs_manual,
        requested_mode=mode,
        face_box=face_box,
        notes=tuple(notes),
        partial_face=partial,
    )


def _keep_minimum(cut_y: int, height: int, mode: str, reason: str | None) -> tuple[int, bool, str | None]:
    """Move a cut that leaves less than MIN_KEEP_FRACTION up, and say so."""
    keep = min_keep_rows(height)
    if height - cut_y >= keep:
        return cut_y, False, reason
    moved = height - keep
    why = (
        f"{mode} cut at row {cut_y} would leave {height - cut_y} px, less than the minimum "
        f"{keep} px ({MIN_KEEP_FRACTION:.0%} of {height}); cut moved up to row {moved}, "
        "the face may be partly visible"
    )
    return moved, True, why


def _fallback(
    faces: Sequence[Face], width: int, height: int, mode: str, notes: list[str], remove: Sequence[Box] = ()
) -> CutDecision:
    cut_y = fallback_cut(height)
    if not faces:
        reason = "no face detected; removed the top 30 %"
    else:
        reason = f"no trustworthy face ({len(faces)} rejected by the sanity gates); removed the top 30 %"
    needs_manual = False
    if remove:
        lowest = max(math.ceil(box_cut(b)) for b in remove)
        if lowest > cut_y:
            cut_y = min(lowest, height)
            reason += f"; cut moved to row {cut_y} below {len(remove)} face box(es) found in the kept part"
        cut_y, needs_manual, moved = _keep_minimum(cut_y, height, "fallback", None)
        if moved:
            reason += "; " + moved
    # A detector box reaching below the fallback row may be a real face the 30 % rule leaves
    # visible: a human has to look at it (unless the output check removed it above).
    visible = [f.box for f in faces if f.box is not None and f.box[3] > cut_y]
    if visible:
        reason += f"; {len(visible)} detected face box(es) extend below row {cut_y}"
    return CutDecision(
        cut_y=cut_y,
        mode_used="fallback",
        face_found=False,
        faces=len(remove),
        box=(0, cut_y, width, height),
        confidence=None,
        fallback_reason=reason,
        needs_manual_crop=needs_manual or bool(visible),
        requested_mode=mode,
        face_box=None,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- the output check

CHECK_VERDICTS: tuple[str, ...] = ("passed", "moved", "needs_manual_crop", "skipped")
MAX_CHECK_ROUNDS = 3  # a face still found after this many moves: a human crops it

# scan(top, wanted) -> faces found in the image rows [top, H), in image pixels. `wanted(box)`
# says which boxes matter (the scanner may skip fitting a mesh to the others).
Scan = Callable[[int, Callable[[Box], bool]], Sequence[Face]]


def check_region_top(decision: CutDecision, height: int) -> int:
    """First row the output check looks at: the cut, minus a band so a face the cut halves is
    seen whole (a detector does not find half a face)."""
    return max(0, decision.cut_y - round(CHECK_BAND_FRACTION * height))


def left_visible(decision: CutDecision, box: Box) -> bool:
    """Does a face the check found at `box` (image pixels) still show in the kept part?

    A box ending at or just above the cut is removed. In chin/lips_only the lowest face is
    meant to be partly kept, so finding it again is not a finding."""
    if box[3] <= decision.cut_y + CHECK_TOLERANCE * (box[3] - box[1]):
        return False
    if decision.partial_face is not None and same_face(decision.partial_face, box):
        return False
    return True


def checked_cut(faces: Sequence[Face], width: int, height: int, mode: str, scan: Scan | None) -> CutDecision:
    """decide_cut, then check the output: `scan` the kept part (plus a band above it) once
    more; every face found there that the cut leaves visible is added to the decision (a
    trustworthy mesh as a face, anything else as a box removed entirely) and the check repeats
    on the new, smaller kept part. Verdicts:

      passed             the first check found nothing left visible
      moved              faces were found and the cut moved below them; the last check was clean
      needs_manual_crop  moving below them would leave too little (or faces were still found
                         after MAX_CHECK_ROUNDS): the image is flagged for a manual crop
      skipped            no scan, or the first cut already needs a manual crop
    """
    decision = decide_cut(faces, width, height, mode)
    if scan is None or decision.needs_manual_crop:
        return replace(decision, output_check="skipped", check_faces=None)
    known, remove, found = list(faces), [], 0
    for _ in range(MAX_CHECK_ROUNDS):
        current = decision
        hits = [f for f in scan(check_region_top(current, height), lambda b: left_visible(current, b))]
        visible = [
            f
            for f in hits
            if left_visible(current, f.box if f.box is not None else f.mesh_box)
            and (check_face(f, width, height) is None or (f.score or 0.0) >= BOX_ONLY_MIN_SCORE)
        ]
        if not visible:
            return replace(decision, output_check="passed" if found == 0 else "moved", check_faces=found)
        found += len(visible)
        for f in visible:
            box = f.box if f.box is not None else f.mesh_box
            seen = any(
                same_face(box, k.box if k.box is not None else k.mesh_box)
                for k in known
                if check_face(k, width, height) is None
            )
            if check_face(f, width, height) is None and not seen:
                known.append(f)
            else:  # no trustworthy mesh, or a known face whose landmarks did not clear its box
                remove.append(box)
        decision = decide_cut(known, width, height, mode, remove=remove)
        if decision.needs_manual_crop:
            return replace(decision, output_check="needs_manual_crop", check_faces=found)
    why = f"the output check still found faces below the cut after {MAX_CHECK_ROUNDS} moves"
    reason = f"{decision.fallback_reason}; {why}" if decision.fallback_reason else why
    return replace(decision, needs_manual_crop=True, fallback_reason=reason, output_check="needs_manual_crop",
                   check_faces=found)  # fmt: skip
