"""Where an image lives in the library, by stage. Pure: keys only, no I/O.

The layout is the one operators already use, per creator:
    <creator>/1_raw/  2_cropped/  3_review/  4_approved/<vault>/  5_uploaded/<vault>/  rejected/
File names keep the original name for people and end with the content id for the machine:
    ComfyUI_00042_--<content-id>.png
"""

from __future__ import annotations

import re
import uuid
from pathlib import PurePosixPath

RAW, CROPPED, REVIEW, APPROVED, UPLOADED, REJECTED = (
    "1_raw", "2_cropped", "3_review", "4_approved", "5_uploaded", "rejected",
)  # fmt: skip
_SEP = "--"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_NAME = re.compile(r"--([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.[a-z_]+)?\.[A-Za-z0-9]+$")


def _stem(original_filename: str) -> str:
    stem = _UNSAFE.sub("_", PurePosixPath(original_filename).stem)
    return (stem or "image")[:60]


def file_name(original_filename: str, content_id: uuid.UUID | str, ext: str = ".png") -> str:
    return f"{_stem(original_filename)}{_SEP}{content_id}{ext}"


def content_id_from_name(name: str) -> uuid.UUID | None:
    """The content id at the end of a library file name, or None for a foreign file."""
    m = _NAME.search(PurePosixPath(name).name)
    return uuid.UUID(m.group(1)) if m else None


def folder(creator: str, stage: str, vault: str | None = None) -> str:
    """`<creator>/<stage>[/<vault>]`: a stage's folder (the prefix of its keys, without `/`)."""
    return "/".join([creator, stage] + ([vault] if vault else []))


def key(creator: str, stage: str, name: str, vault: str | None = None) -> str:
    return f"{folder(creator, stage, vault)}/{name}"


def reason_key(key_: str) -> str:
    """The note beside a rejected file that says why: `<key>.reason.txt`."""
    return key_ + ".reason.txt"


def name_of(key_: str) -> str:
    return key_.rsplit("/", 1)[-1]


def stage_of(key_: str) -> tuple[str, str | None] | None:
    """(stage, vault) of a library key `<creator>/<stage>[/<vault>]/<name>`."""
    parts = key_.split("/")
    if len(parts) == 3:
        return parts[1], None
    if len(parts) == 4:
        return parts[1], parts[2]
    return None


def extension_for(fmt: str | None, original_filename: str) -> str:
    by_format = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
    if fmt and fmt.upper() in by_format:
        return by_format[fmt.upper()]
    suffix = PurePosixPath(original_filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"
