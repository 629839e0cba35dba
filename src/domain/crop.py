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

Several faces: every face gets its own cut for the requested mode and the decision takes the
LOWEST of them (largest cut_y). Every face is then cut at or below its own line, so no face
shows more than the mode allows; faces higher up are removed entirely. Faces smaller than
MIN_FACE_FRACTION of the largest (posters, background people) do not move the cut.

Too little left: if the cut would leave less than MIN_KEEP_FRACTION of the height, the cut is
moved up to keep exactly that much and `needs_manual_crop` is set: a human has to crop it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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
MIN_FACE_FRACTION = 0.25  # faces smaller than this x the largest one do not move the cut
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
    notes: diagnostics for logs (faces rejected by the sanity gates, faces ignored as small).
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


def decide_cut(faces: Sequence[Face], width: int, height: int, mode: str) -> CutDecision:
    """Choose the cut row for an image of `width` x `height` with the detected `faces`."""
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

    if not trusted:
        return _fallback(faces, width, height, mode, notes)

    largest = max(f.height for f in trusted)
    used = [f for f in trusted if f.height >= MIN_FACE_FRACTION * largest]
    if len(used) < len(trusted):
        notes.append(
            f"{len(trusted) - len(used)} face(s) smaller than {MIN_FACE_FRACTION:.0%} of the "
            "largest ignored for the cut"
        )

    # The lowest per-face cut wins: every face is then cut at or below its own line.
    cuts = [(face_cut(f, mode), f) for f in used]
    (cut, reason), decider = max(cuts, key=lambda c: c[0][0])

    # ceil: never keep a row the rule says to remove.
    cut_y = min(max(math.ceil(cut), 0), height)
    needs_manual = False
    keep = min_keep_rows(height)
    if height - cut_y < keep:
        moved = height - keep
        reason = (
            f"{mode} cut at row {cut_y} would leave {height - cut_y} px, less than the minimum "
            f"{keep} px ({MIN_KEEP_FRACTION:.0%} of {height}); cut moved up to row {moved}, "
            "the face may be partly visible"
        )
        cut_y = moved
        needs_manual = True

    return CutDecision(
        cut_y=cut_y,
        mode_used=mode,
        face_found=True,
        faces=len(trusted),
        box=(0, cut_y, width, height),
        confidence=decider.score,
        fallback_reason=reason,
        needs_manual_crop=needs_manual,
        requested_mode=mode,
        face_box=decider.box if decider.box is not None else decider.mesh_box,
        notes=tuple(notes),
    )


def _fallback(faces: Sequence[Face], width: int, height: int, mode: str, notes: list[str]) -> CutDecision:
    cut_y = fallback_cut(height)
    if not faces:
        reason = "no face detected; removed the top 30 %"
    else:
        reason = f"no trustworthy face ({len(faces)} rejected by the sanity gates); removed the top 30 %"
    # A detector box reaching below the fallback row may be a real face the 30 % rule leaves
    # visible: a human has to look at it.
    visible = [f.box for f in faces if f.box is not None and f.box[3] > cut_y]
    if visible:
        reason += f"; {len(visible)} detected face box(es) extend below row {cut_y}"
    return CutDecision(
        cut_y=cut_y,
        mode_used="fallback",
        face_found=False,
        faces=0,
        box=(0, cut_y, width, height),
        confidence=None,
        fallback_reason=reason,
        needs_manual_crop=bool(visible),
        requested_mode=mode,
        face_box=None,
        notes=tuple(notes),
    )
