"""Face detection with MediaPipe (legacy `mediapipe.solutions`, models inside the 0.10.21 wheel).

Two stages, as measured in /work/shared/research/crop.md §0.1:
  1. FaceDetection(model_selection=1), the full-range model, on the whole image: finds faces
     down to ~80 px in an 832x1216 frame (FaceMesh's built-in short-range detector misses them).
  2. FaceMesh on a square ROI around each box, enlarged ROI_SCALE x and resized to ROI_SIZE px
     (small faces get upscaled), landmarks mapped back to image pixels.
  If stage 1 finds nothing, FaceMesh runs on the whole image (it finds a face filling the
  frame, which the full-range model misses). The tile pass from the research (faces of
  20-50 px) is not done: ~15 extra detector runs per image for faces that the 30 % fallback
  removes anyway in full-body shots.

Thread-safety: MediaPipe solution graphs keep state and are not safe to call concurrently.
Use one FaceDetector per thread or process; calls on one instance are serialised by a lock,
so sharing one is slow, not wrong. Close it (or use it as a context manager) to free the graphs.
"""

from __future__ import annotations

import threading
from typing import Protocol

import cv2
import numpy as np

from vaultline.domain.crop import MESH_POINTS, Face, box_iou

MIN_DETECTION_SCORE = 0.5  # 0.7 loses the astronaut (score 0.67 short-range, research §2)
ROI_SCALE = 2.0  # ROI side = this x the longer side of the detector box
ROI_SIZE = 384  # px; FaceMesh works best on faces of ~150-250 px
WHOLE_IMAGE_MAX_FACES = 4
MAX_DETECT_SIDE = 2048  # larger images are downscaled for stage 1 only
_GRAY = 128


class FaceFinder(Protocol):
    """What the cropper needs; tests inject fakes with fixed landmarks."""

    def detect(self, rgb: np.ndarray) -> list[Face]: ...


class FaceDetector:
    """Finds faces and their 468-point meshes in an HxWx3 uint8 RGB array (RGB, not BGR)."""

    def __init__(self, *, min_score: float = MIN_DETECTION_SCORE) -> None:
        # Imported here so that importing this module (and the CLI) stays fast.
        from mediapipe.python.solutions import face_detection, face_mesh

        self._lock = threading.Lock()
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score)
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
                for graph in (self._detector, self._roi_mesh, self._whole_mesh):
                    graph.close()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        with self._lock:
            if self._closed:
                raise RuntimeError("FaceDetector is closed")
            boxes = self._detect_boxes(rgb)
            if boxes:
                faces = [self._mesh_in_roi(rgb, box, score) for box, score in boxes]
            else:
                faces = self._mesh_whole(rgb)
        # Deterministic order: top to bottom, then left to right.
        return sorted(faces, key=_face_sort_key)

    # ------------------------------------------------------------------ stages

    def _detect_boxes(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        h, w = rgb.shape[:2]
        small = rgb
        if max(h, w) > MAX_DETECT_SIDE:  # relative boxes make the mapping back free
            f = MAX_DETECT_SIDE / max(h, w)
            small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        result = self._detector.process(small)
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


def _to_array(mesh) -> np.ndarray:
    return np.array([(p.x, p.y) for p in mesh.landmark], dtype=np.float64)


def _bbox(pts: np.ndarray) -> tuple[float, float, float, float]:
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def _face_sort_key(face: Face) -> tuple[float, float]:
    box = face.box if face.box is not None else face.mesh_box
    return (round(box[1], 1), round(box[0], 1))


__all__ = ["FaceDetector", "FaceFinder", "MIN_DETECTION_SCORE", "ROI_SCALE", "ROI_SIZE"]
