"""Face detection with MediaPipe (legacy `mediapipe.solutions`, models inside the 0.10.21 wheel).

Two stages, as measured in /work/shared/research/crop.md §0.1:
  1. FaceDetection(model_selection=1), the full-range model, on the whole image: finds faces
     down to ~80 px in an 832x1216 frame (FaceMesh's built-in short-range detector misses them).
  2. FaceMesh on a square ROI around each box, enlarged ROI_SCALE x and resized to ROI_SIZE px
     (small faces get upscaled), landmarks mapped back to image pixels.
  If stage 1 finds nothing, FaceMesh runs on the whole image (it finds a face filling the
  frame, which the full-range model misses).

`scan(rgb, top=..., wanted=...)` is the small-face pass, used by the output check on the rows
a cut keeps: the full-range model on overlapping tiles of TILE_SIDE px (the model works at
192x192, so a tile is seen at 192/608 = 0.32 scale instead of 192/1216 = 0.16 for the whole
frame: a 60 px face becomes ~19 px at the model's input, which it finds, instead of ~10 px,
which it misses), the short-range model on the whole region beside it (faces too large for a
tile), boxes merged by overlap (IoU or containment), then FaceMesh on each wanted box's ROI as
in stage 2. Measured on 60 faces of 50-120 px: whole frame 28/60 found, scan 54/60, the
misses being faces a third outside the frame (README, crop section).

Thread-safety: MediaPipe solution graphs keep state and are not safe to call concurrently.
Use one FaceDetector per thread or process; calls on one instance are serialised by a lock,
so sharing one is slow, not wrong. Close it (or use it as a context manager) to free the graphs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import cv2
import numpy as np

from vaultline.domain.crop import MESH_POINTS, Box, Face, box_iou, merge_boxes

MIN_DETECTION_SCORE = 0.5  # 0.7 loses the astronaut (score 0.67 short-range, research §2)
ROI_SCALE = 2.0  # ROI side = this x the longer side of the detector box
ROI_SIZE = 384  # px; FaceMesh works best on faces of ~150-250 px
WHOLE_IMAGE_MAX_FACES = 4
TILE_SIDE = 608  # px; 2 columns on an 832 px wide frame, 2 rows on the 70 % a fallback keeps
EDGE_PAD = 64  # px of grey added left and right of the scanned region
MAX_DETECT_SIDE = 2048  # larger images are downscaled for stage 1 only
_GRAY = 128


class FaceFinder(Protocol):
    """What the cropper needs; tests inject fakes with fixed landmarks.

    detect: the first pass over the whole image.
    scan: the output check's pass over rows [top, H): small faces included; `wanted(box)`
        (image pixels) says which boxes matter, so the others need no mesh. Faces in image
        pixels, each with its detector box."""

    def detect(self, rgb: np.ndarray) -> list[Face]: ...

    def scan(self, rgb: np.ndarray, *, top: int = 0, wanted: Callable[[Box], bool] | None = None) -> list[Face]: ...


class FaceDetector:
    """Finds faces and their 468-point meshes in an HxWx3 uint8 RGB array (RGB, not BGR)."""

    def __init__(self, *, min_score: float = MIN_DETECTION_SCORE) -> None:
        # Imported here so that importing this module (and the CLI) stays fast.
        from mediapipe.python.solutions import face_detection, face_mesh

        self._lock = threading.Lock()
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score)
        self._short = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score)
        # static_image_mode=True: every image is unrelated; tracking mode would carry faces over.
        self._roi_mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2)
        self._whole_mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=WHOLE_IMAGE_MAX_FACES)
        self._closed = False

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                for graph in (self._detector, self._short, self._roi_mesh, self._whole_mesh):
                    graph.close()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        rgb = _checked(rgb)
        with self._lock:
            self._open()
            boxes = self._detect_boxes(rgb)
            if boxes:
                faces = [self._mesh_in_roi(rgb, box, score) for box, score in boxes]
            else:
                faces = self._mesh_whole(rgb)
        # Deterministic order: top to bottom, then left to right.
        return sorted(faces, key=_face_sort_key)

    def scan(self, rgb: np.ndarray, *, top: int = 0, wanted: Callable[[Box], bool] | None = None) -> list[Face]:
        rgb = _checked(rgb)
        h, w = rgb.shape[:2]
        top = min(max(int(top), 0), h)
        with self._lock:
            self._open()
            found: list[tuple[Box, float]] = []
            if top < h:
                # Grey margins left and right: a face cut by the frame's side edge is found
                # when it does not touch the tile's edge (measured: half faces at the edge).
                pad = round(EDGE_PAD * max(1.0, max(h, w) / 1216))
                rh, rw = h - top, w + 2 * pad  # the region, with the grey margins
                # Tiles on a large image are as large, relative to the frame, as on 832x1216.
                side = max(TILE_SIDE, round(max(h, w) * TILE_SIDE / 1216))
                tw, th = min(side, rw), min(side, rh)
                for y in _starts(rh, th):
                    for x in _starts(rw, tw):
                        x0 = x - pad  # image column of the tile's left edge (may be < 0)
                        tile = np.full((th, tw, 3), _GRAY, np.uint8)
                        sx0, sx1 = max(x0, 0), min(x0 + tw, w)
                        tile[:, sx0 - x0 : sx1 - x0] = rgb[top + y : top + y + th, sx0:sx1]
                        found += _shifted(self._detect_boxes(tile), x0, top + y)
                found += _shifted(self._detect_boxes(rgb[top:], self._short), 0, top)
            faces = [
                self._mesh_in_roi(rgb, box, score)
                for box, score in merge_boxes(found)
                if wanted is None or wanted(box)
            ]
        return sorted(faces, key=_face_sort_key)

    # ------------------------------------------------------------------ stages

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError("FaceDetector is closed")

    def _detect_boxes(self, rgb: np.ndarray, model=None) -> list[tuple[Box, float]]:
        h, w = rgb.shape[:2]
        small = rgb
        if max(h, w) > MAX_DETECT_SIDE:  # relative boxes make the mapping back free
            f = MAX_DETECT_SIDE / max(h, w)
            small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        result = (model or self._detector).process(small)
        boxes = []
        for det in result.detections or ():
            rb = det.location_data.relative_bounding_box
            box = (rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h)
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append((box, float(det.score[0])))
        return boxes

    def _mesh_in_roi(self, rgb: np.ndarray, box: tuple[float, float, float, float], score: float) -> Face:
        h, w = rgb.shape[:2]
        side = max(2, round(ROI_SCALE * max(box[2] - box[0], box[3] - box[1])))
        x0 = round((box[0] + box[2]) / 2 - side / 2)
        y0 = round((box[1] + box[3]) / 2 - side / 2)
        # Copy the part of the ROI inside the image into a grey square, so faces at the border
        # stay centred in the ROI instead of being shifted by clipping.
        roi = np.full((side, side, 3), _GRAY, np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
        if sx1 > sx0 and sy1 > sy0:
            roi[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        interp = cv2.INTER_LINEAR if side < ROI_SIZE else cv2.INTER_AREA
        roi = cv2.resize(roi, (ROI_SIZE, ROI_SIZE), interpolation=interp)
        result = self._roi_mesh.process(roi)
        best, best_iou = None, -1.0
        for mesh in result.multi_face_landmarks or ():
            pts = _to_array(mesh)[:MESH_POINTS]
            pts = pts * side + (x0, y0)  # ROI-relative -> image pixels
            iou = box_iou(_bbox(pts), box)
            if iou > best_iou:  # with two faces in one ROI, keep the one this box is about
                best, best_iou = pts, iou
        return Face(landmarks=best, box=box, score=score)

    def _mesh_whole(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        result = self._whole_mesh.process(rgb)
        return [Face(landmarks=_to_array(m)[:MESH_POINTS] * (w, h)) for m in result.multi_face_landmarks or ()]


def _checked(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def _starts(length: int, tile: int) -> list[int]:
    """Tile origins along one axis: first and last tile flush with the edges, neighbours
    overlapping by at least a third of a tile (so every face up to a third of a tile, ~200 px,
    lies whole in one tile; larger ones are the short-range model's and the first pass's)."""
    if length <= tile:
        return [0]
    steps = -(-(length - tile) * 3 // (2 * tile))  # ceil((length - tile) / (2/3 tile))
    return [round(i * (length - tile) / steps) for i in range(steps + 1)]


def _shifted(boxes: Sequence[tuple[Box, float]], dx: float, dy: float) -> list[tuple[Box, float]]:
    return [((b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy), s) for b, s in boxes]


def _to_array(mesh) -> np.ndarray:
    return np.array([(p.x, p.y) for p in mesh.landmark], dtype=np.float64)


def _bbox(pts: np.ndarray) -> tuple[float, float, float, float]:
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def _face_sort_key(face: Face) -> tuple[float, float]:
    box = face.box if face.box is not None else face.mesh_box
    return (round(box[1], 1), round(box[0], 1))


__all__ = ["FaceDetector", "FaceFinder", "MIN_DETECTION_SCORE", "ROI_SCALE", "ROI_SIZE", "TILE_SIDE"]
