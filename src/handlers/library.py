"""library: files a decided image where the operator expects it.

image.approved -> <creator>/3_review/<name> moves to <creator>/4_approved/<vault>/<name>
image.rejected -> <creator>/3_review/<name> moves to <creator>/rejected/<name>
                  (with <name>.reason.txt beside it, like a failed crop)

The decision events carry no file name, and the content row is not this handler's to read.
Every library file name ends with `--<content id>.<ext>` (domain/library.py), so the file is
found by listing 3_review/ of the creator. That costs one listing of the review folder per
decision (a few thousand names at most) and keeps working when the crop naming changes or
a person renamed the visible part of a file.

Idempotent without bookkeeping: when the source is gone and the destination holds the file,
the move already happened (a redelivery, or the person moved it by hand, which is how the
folder-move review decides); an approved file already under 5_uploaded/<vault>/ was filed by
the upload handler; when the file is nowhere there is nothing to do but say so."""

from __future__ import annotations

import uuid

import structlog

from vaultline.domain import library
from vaultline.events import Envelope, ImageApproved, ImageRejected
from vaultline.handlers.ports import Storage

NAME = "library"
log = structlog.get_logger("vaultline.library")


async def _keys_of(storage: Storage, folder: str, content_id: uuid.UUID) -> list[str]:
    """Keys directly inside `folder/` whose name carries `content_id`."""
    prefix = folder.rstrip("/") + "/"
    return [
        k
        for k in await storage.list(prefix)
        if "/" not in k[len(prefix) :] and library.content_id_from_name(k) == content_id
    ]


async def handle(event: Envelope, *, storage: Storage) -> list[str]:
    """Returns the keys the image now has in its destination folder (empty: none found)."""
    p = event.payload
    creator = event.creator
    if isinstance(p, ImageApproved):
        dest_folder = library.folder(creator, library.APPROVED, p.vault)
        # The upload handler reads the same event and files the image under 5_uploaded/ when
        # done; if it got there first, this move is simply no longer needed.
        later_folder: str | None = library.folder(creator, library.UPLOADED, p.vault)
    elif isinstance(p, ImageRejected):
        dest_folder, later_folder = library.folder(creator, library.REJECTED), None
    else:
        return []
    try:
        content_id = uuid.UUID(event.key)
    except ValueError:
        log.warning("decision for a key that is not a content id; nothing to move", key=event.key)
        return []
    bound = log.bind(content_id=str(content_id), type=event.type, dest=dest_folder)

    moved: list[str] = []
    for src in await _keys_of(storage, library.folder(creator, library.REVIEW), content_id):
        dst = f"{dest_folder}/{library.name_of(src)}"
        try:
            await storage.move(src, dst)
        except KeyError:
            # Moved by someone else between the listing and now (another worker, the upload
            # handler, a person): the checks below find where it went.
            if not await storage.exists(dst):
                continue
        moved.append(dst)
        bound.info("filed", src=src, dst=dst)

    if not moved:
        moved = await _keys_of(storage, dest_folder, content_id)
        if moved:
            bound.info("already filed", dst=moved)
        elif later_folder and await _keys_of(storage, later_folder, content_id):
            bound.info("already past this stage", at=later_folder)
            return []
        else:
            bound.warning("no review file to move and none at the destination; leaving it")
            return []
    if isinstance(p, ImageRejected):
        for dst in moved:
            await storage.put(library.reason_key(dst), f"{p.reason}\n".encode(), "text/plain")
    return moved
