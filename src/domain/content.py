"""The `content` projection: how each event changes the row of one image. Pure.

Status moves generated -> in_review (crop written to 3_review/) -> approved | rejected
-> uploaded, with crop_failed, recrop_requested and upload_failed on the side. Deliveries
can arrive out of order when a handler runs on several workers, so every event fills in its
own fields whatever the order, and `status` only follows the newest event (by occurred_at).
"""

from __future__ import annotations

import uuid
from typing import Any

from vaultline.events import (
    Envelope,
    ImageApproved,
    ImageCropFailed,
    ImageCropped,
    ImageGenerated,
    ImageRecropRequested,
    ImageRejected,
    MediaUploaded,
    MediaUploadFailed,
    MediaUploadRetryRequested,
)

STATUSES = (
    "generated",
    "cropped",
    "in_review",
    "crop_failed",
    "recrop_requested",
    "approved",
    "rejected",
    "uploaded",
    "upload_failed",
)
# Statuses a reviewer may decide on.
REVIEWABLE = ("in_review",)


def _status_for(event: Envelope) -> str | None:
    p = event.payload
    if isinstance(p, ImageGenerated):
        return "generated"
    if isinstance(p, ImageCropped):
        return "in_review" if p.review_key else "cropped"
    if isinstance(p, ImageCropFailed):
        return "crop_failed"
    if isinstance(p, ImageRecropRequested):
        return "recrop_requested"
    if isinstance(p, ImageApproved):
        return "approved"
    if isinstance(p, ImageRejected):
        return "rejected"
    if isinstance(p, MediaUploaded):
        return "uploaded"
    if isinstance(p, MediaUploadFailed):
        return "upload_failed"
    if isinstance(p, MediaUploadRetryRequested):
        return "approved"  # back in the upload queue
    return None


def _fields_for(event: Envelope) -> dict[str, Any]:
    p = event.payload
    if isinstance(p, ImageGenerated):
        return {
            "original_filename": p.original_filename,
            "raw_key": p.storage_key,
            "sha256": p.sha256,
            "phash": p.phash,
            "near_duplicate_of": p.near_duplicate_of,
            "phash_distance": p.phash_distance,
            "requested_crop_mode": p.crop_mode,
            "width": p.width,
            "height": p.height,
            "comfy": p.comfy.model_dump(exclude_none=True) or None,
            "generated_at": event.occurred_at,
        }
    if isinstance(p, ImageCropped):
        return {
            "cropped_key": p.cropped_key,
            "review_key": p.review_key,
            "cropped_filename": p.cropped_key.rsplit("/", 1)[-1],
            "local_path": p.review_key or p.cropped_key,
            "crop_mode_used": p.mode_used,
            "face_found": p.face_found,
            "faces": p.faces,
            "cut_y": p.cut_y,
            "crop_box": p.box.model_dump() if p.box else None,
            "crop_confidence": p.confidence,
            "fallback_reason": p.fallback_reason,
            "needs_manual_crop": p.needs_manual_crop,
            "output_check": p.output_check,
            "output_check_faces": p.output_check_faces,
            "error": None,
        }
    if isinstance(p, ImageCropFailed):
        return {"error": p.reason, "local_path": p.rejected_key}
    if isinstance(p, ImageRecropRequested):
        return {"requested_crop_mode": p.mode}
    if isinstance(p, ImageApproved):
        return {
            "vault": p.vault,
            "category": p.category,
            "tags": list(p.tags),
            "description": p.description,
            "price_cents": p.price_cents,
            "reject_reason": None,
        }
    if isinstance(p, ImageRejected):
        return {"reject_reason": p.reason}
    if isinstance(p, MediaUploaded):
        return {
            "platform": p.platform,
            "fanvue_media_uuid": p.media_uuid,
            "fanvue_vault": p.vault_folder,
            "fanvue_url": p.url,
            "uploaded_at": event.occurred_at,
            "error": None,
        }
    if isinstance(p, MediaUploadFailed):
        return {"platform": p.platform, "error": p.reason}
    return {}


def project(row: dict[str, Any] | None, event: Envelope) -> dict[str, Any] | None:
    """The row after `event`; None when the event does not concern the content table."""
    status = _status_for(event)
    if status is None:
        return None
    new = dict(row) if row else {"id": uuid.UUID(event.key), "creator": event.creator, "tags": []}
    for k, v in _fields_for(event).items():
        # A late image.generated must not blank what a later event already filled in.
        if v is None and new.get(k) is not None and status == "generated":
            continue
        new[k] = v
    previous_at = new.get("status_at")
    if previous_at is None or event.occurred_at >= previous_at:
        new["status"] = status
        new["status_at"] = event.occurred_at
    elif "status" not in new:
        new["status"] = status
        new["status_at"] = event.occurred_at
    new["last_event_id"] = event.event_id
    return new
