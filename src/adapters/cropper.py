"""The crop engine: image bytes + mode -> two cropped PNGs and the decision behind them.

    cropper = Cropper()                        # one per thread/process (holds MediaPipe graphs)
    result = cropper.crop(png_bytes, "no_face")  # raises BadImage for unreadable/unsafe input
    result.upload_png    # stripped: no prompt/workflow/EXIF/ICC, safe to upload
    result.archive_png   # same pixels + the source's text chunks, EXIF, ICC (operator's copy)
    result.to_cropped_payload(cropped_key="elena/2_cropped/<id>.png")  # -> ImageCropped

decode -> detect -> decide (vaultline.domain.crop) -> check the kept part (small-face scan;
a face found there moves the cut, repeat) -> crop rows [cut_y, H) -> encode.
Deterministic: the same bytes and mode give the same output bytes (fixed zlib settings,
MediaPipe in static-image mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vaultline.adapters.faces import FaceFinder
from vaultline.adapters.imaging import BadImage, decode, encode_pair
from vaultline.domain.crop import Box, CutDecision, Face, checked_cut
from vaultline.events import CROP_MODES
from vaultline.events import CutBox, ImageCropped

__all__ = ["BadImage", "CropResult", "Cropper"]


@dataclass(frozen=True)
class CropResult:
    archive_png: bytes
    upload_png: bytes
    decision: CutDecision
    width: int  # of the crop
    height: int
    original_width: int  # of the upright source (after EXIF orientation)
    original_height: int
    text_chunks: dict[str, str]  # the source's PNG text (ComfyUI prompt/workflow), {} if none
    timings_ms: dict[str, float]  # decode, detect, check, crop, encode, total
    source_format: str = "PNG"
    source_mode: str = "RGB"
    output_mode: str = "RGB"
    exif_rotated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def cut_box(self) -> CutBox:
        """The kept region in the upright source's pixel coordinates."""
        x0, y0, x1, y1 = self.decision.box
        return CutBox(x0=x0, y0=y0, x1=x1, y1=y1)

    def cropped_fields(self) -> dict[str, Any]:
        """Every ImageCropped field the crop itself determines (all but the storage keys)."""
        d = self.decision
        return {
            "mode_used": d.mode_used,
            "face_found": d.face_found,
            "faces": d.faces,
            "cut_y": d.cut_y,
            "box": self.cut_box,
            "confidence": None if d.confidence is None else round(d.confidence, 4),
            "fallback_reason": d.fallback_reason,
            "needs_manual_crop": d.needs_manual_crop,
            "width": self.width,
            "height": self.height,
            "output_check": d.output_check,
            "output_check_faces": d.check_faces,
        }

    def to_cropped_payload(self, cropped_key: str, review_key: str | None = None) -> ImageCropped:
        return ImageCropped(cropped_key=cropped_key, review_key=review_key, **self.cropped_fields())


class Cropper:
    """Face-aware cropper. `detector` is a FaceFinder (`detect` and `scan`); by default a
    MediaPipe FaceDetector is created on first use. Not thread-safe beyond what the detector
    guarantees: use one Cropper per worker thread or process.

    check=False turns the output check (and with it the small-face scan) off: for the
    benchmark's "without the tile pass" column only; every production path checks."""

    def __init__(self, detector: FaceFinder | None = None, *, check: bool = True) -> None:
        self._detector = detector
        self._owns_detector = detector is None
        self._check = check

    @property
    def detector(self) -> FaceFinder:
        if self._detector is None:
            from vaultline.adapters.faces import FaceDetector  # loads MediaPipe (~0.6 s)

            self._detector = FaceDetector()
        return self._detector

    def close(self) -> None:
        if self._owns_detector and self._detector is not None:
            self._detector.close()  # type: ignore[attr-defined]
            self._detector = None

    def __enter__(self) -> "Cropper":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def crop(self, data: bytes, mode: str) -> CropResult:
        """Crop `data` (PNG/JPEG/WebP bytes) in `mode` ("no_face", "chin", "lips_only").

        Raises BadImage for unreadable or unsafe input, ValueError for an unknown mode. An image
        without a usable face is not an error: it gets the 30 % fallback cut (see decision)."""
        if mode not in CROP_MODES:
            raise ValueError(f"unknown crop mode {mode!r}; expected one of {', '.join(CROP_MODES)}")
        t0 = time.perf_counter()
        decoded = decode(data)
        t1 = time.perf_counter()
        detector = self.detector
        faces = detector.detect(decoded.rgb)
        scan_s = [0.0]

        def scan(top: int, wanted: Callable[[Box], bool]) -> list[Face]:
            s0 = time.perf_counter()
            try:
                return detector.scan(decoded.rgb, top=top, wanted=wanted)
            finally:
                scan_s[0] += time.perf_counter() - s0

        decision = checked_cut(faces, decoded.width, decoded.height, mode, scan if self._check else None)
        t2 = time.perf_counter()
        _, y0, _, y1 = decision.box  # full width: the crop only removes rows at the top
        cropped = decoded.crop_rows(y0, y1)
        t3 = time.perf_counter()
        archive, upload = encode_pair(cropped, decoded.metadata)
        t4 = time.perf_counter()
        ms = lambda a, b: round((b - a) * 1000, 3)  # noqa: E731
        return CropResult(
            archive_png=archive,
            upload_png=upload,
            decision=decision,
            width=decoded.width,
            height=y1 - y0,
            original_width=decoded.width,
            original_height=decoded.height,
            text_chunks=dict(decoded.metadata.text),
            timings_ms={
                "decode": ms(t0, t1),
                "detect": round(ms(t1, t2) - scan_s[0] * 1000, 3),
                "check": round(scan_s[0] * 1000, 3),
                "crop": ms(t2, t3),
                "encode": ms(t3, t4),
                "total": ms(t0, t4),
            },
            source_format=decoded.format,
            source_mode=decoded.source_mode,
            output_mode=decoded.image.mode,
            exif_rotated=decoded.exif_rotated,
            notes=decision.notes,
        )
