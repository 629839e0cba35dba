"""Test images built from pictures that ship inside installed packages (no downloads).

Real faces: scikit-image's astronaut (Eileen Collins, public domain) and camera (cameraman,
grey), the first 100 entries of skimage's lfw_subset (25x25 faces), matplotlib's
grace_hopper.jpg. They are placed onto 832x1216 canvases (the ComfyUI portrait size) with a
known affine transform, so a test can map landmarks found on the ORIGINAL picture into the
canvas and check a cut row against them independently of the detection on the canvas.

    png = face_png([Placement("astronaut", center=(416, 300), width=700, angle=10)])
    expected = Placement(...).map_points(landmarks_on_original)

Also: no-face images (noise, gradient, the cameraman's tripod and grass), ComfyUI-style text
chunks, and PNG/JPEG byte helpers.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

CANVAS_W, CANVAS_H = 832, 1216
BACKGROUND = 128  # mid-grey


# --------------------------------------------------------------------------- source pictures


@functools.lru_cache(maxsize=None)
def source_image(name: str) -> np.ndarray:
    """An RGB uint8 picture by name: "astronaut", "grace_hopper", "camera" (grey replicated),
    "lfw:<i>" (i < 100 are faces, 25x25), "chelsea" (a cat: not a human face)."""
    from skimage import data

    if name == "astronaut":
        arr = data.astronaut()
    elif name == "camera":
        arr = np.repeat(data.camera()[:, :, None], 3, axis=2)
    elif name == "chelsea":
        arr = data.chelsea()
    elif name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            arr = np.asarray(Image.open(f).convert("RGB"))
    elif name.startswith("lfw:"):
        faces = data.lfw_subset()  # float64 in [0, 1] in skimage 0.26 (uint8 per its docstring)
        face = faces[int(name[4:])]
        face = face * 255 if face.dtype.kind == "f" and face.max() <= 1.0 else face
        arr = np.repeat(np.clip(face, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    else:
        raise ValueError(f"unknown source image {name!r}")
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    arr.setflags(write=False)  # cached: callers must not modify it
    return arr


# --------------------------------------------------------------------------- placing faces


@dataclass(frozen=True)
class Placement:
    """Put `source` into a canvas: scaled to `width` px wide, rotated by `angle` degrees
    counter-clockwise (as seen on screen) about its centre, its centre at `center` (x, y)."""

    source: str = "astronaut"
    center: tuple[float, float] = (CANVAS_W / 2, 416.0)
    width: float = 832.0
    angle: float = 0.0

    def matrix(self) -> np.ndarray:
        """2x3 affine matrix: source pixel (x, y) -> canvas pixel."""
        src = source_image(self.source)
        h, w = src.shape[:2]
        # Pixel centres: source pixel i covers [i, i+1), so its centre is i + 0.5; the matrix
        # maps continuous coordinates (landmarks are continuous).
        c = (w / 2.0, h / 2.0)
        m = cv2.getRotationMatrix2D(c, self.angle, self.width / w)
        m[:, 2] += np.array(self.center) - np.array(c)
        return m

    def map_points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) source pixel coordinates to canvas coordinates."""
        m = self.matrix()
        return points @ m[:, :2].T + m[:, 2]


def canvas(
    placements: Sequence[Placement],
    size: tuple[int, int] = (CANVAS_W, CANVAS_H),
    background: int | np.ndarray = BACKGROUND,
) -> np.ndarray:
    """An RGB uint8 canvas (width, height = size) with every placement pasted in order."""
    w, h = size
    if isinstance(background, np.ndarray):
        out = cv2.resize(background, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    else:
        out = np.full((h, w, 3), background, np.float32)
    for p in placements:
        src = source_image(p.source)
        m = p.matrix()
        # cv2.warpAffine treats pixel centres as integers; shift by half a pixel on both sides
        # so the continuous mapping of `matrix()` holds for landmarks.
        shift = m[:, :2] @ np.array([0.5, 0.5]) - np.array([0.5, 0.5])
        mc = m.copy()
        mc[:, 2] += shift
        interp = cv2.INTER_AREA if p.width < src.shape[1] else cv2.INTER_LINEAR
        warped = cv2.warpAffine(src, mc, (w, h), flags=interp if p.angle == 0 else cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), mc, (w, h), flags=cv2.INTER_LINEAR)
        a = (mask.astype(np.float32) / 255.0)[:, :, None]
        out = out * (1 - a) + warped.astype(np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- encoding


def comfy_text(seed: int = 1234, workflow_kb: int = 8) -> dict[str, str]:
    """ComfyUI-style `prompt` and `workflow` text chunks (JSON strings, as SaveImage writes)."""
    prompt = {
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 30, "cfg": 6.5}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "persona_v3.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo of elena, secret recipe, 85mm"}},
    }
    nodes = [{"id": i, "type": "Note", "widgets_values": ["x" * 100]} for i in range(workflow_kb * 8)]
    workflow = {"last_node_id": len(nodes), "nodes": nodes}
    return {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)}


def png_bytes(image: np.ndarray | Image.Image, text: dict[str, str] | None = None, **save_kw) -> bytes:
    """PNG bytes, with `text` as tEXt chunks (compress_level 4 like ComfyUI's SaveImage)."""
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info, compress_level=save_kw.pop("compress_level", 4), **save_kw)
    return buf.getvalue()


def jpeg_bytes(image: np.ndarray | Image.Image, **save_kw) -> bytes:
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=save_kw.pop("quality", 92), **save_kw)
    return buf.getvalue()


def face_png(
    placements: Sequence[Placement], text: dict[str, str] | None = None, background: int | np.ndarray = BACKGROUND
) -> bytes:
    """832x1216 PNG bytes with real faces at the given placements."""
    return png_bytes(canvas(placements, background=background), text=text)


# --------------------------------------------------------------------------- no faces


def noise_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (CANVAS_H, CANVAS_W, 3), dtype=np.uint8)


def gradient_image() -> np.ndarray:
    y = np.linspace(0, 255, CANVAS_H)[:, None]
    x = np.linspace(0, 255, CANVAS_W)[None, :]
    return np.stack([np.broadcast_to(y, (CANVAS_H, CANVAS_W)), np.broadcast_to(x, (CANVAS_H, CANVAS_W)),
                     np.full((CANVAS_H, CANVAS_W), 90.0)], axis=2).astype(np.uint8)  # fmt: skip


def camera_no_face_image() -> np.ndarray:
    """The cameraman picture below his face (tripod, coat, grass), stretched to the canvas."""
    lower = source_image("camera")[260:, :]
    return cv2.resize(lower, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_LINEAR)


def no_face_pngs() -> dict[str, bytes]:
    """832x1216 PNGs without any face: "noise", "gradient", "camera_lower"."""
    return dict(_no_face_pngs())


@functools.lru_cache(maxsize=1)
def _no_face_pngs() -> dict[str, bytes]:
    return {
        "noise": png_bytes(noise_image()),
        "gradient": png_bytes(gradient_image()),
        "camera_lower": png_bytes(camera_no_face_image()),
    }


__all__ = [
    "BACKGROUND",
    "CANVAS_H",
    "CANVAS_W",
    "Placement",
    "camera_no_face_image",
    "canvas",
    "comfy_text",
    "face_png",
    "gradient_image",
    "jpeg_bytes",
    "no_face_pngs",
    "noise_image",
    "png_bytes",
    "source_image",
]
