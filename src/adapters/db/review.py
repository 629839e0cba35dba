"""Read queries behind the review API and CLI: the content list (filters, keyset paging),
one item, and counts per (creator, status). Decisions are written by handlers/review.py."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from vaultline.domain.content import STATUSES

# Badge / filter name -> SQL condition on `content`. One definition, so a badge the API
# shows on an item and the filter of the same name always agree.
FLAGS: dict[str, str] = {
    "needs_manual_crop": "needs_manual_crop",
    "near_duplicate": "near_duplicate_of IS NOT NULL",
    "fallback": "(crop_mode_used = 'fallback' OR fallback_reason IS NOT NULL)",
    "face": "face_found IS TRUE",
    # the crop's output check found a face the first cut left visible (moved or flagged)
    "face_check": "output_check IN ('moved', 'needs_manual_crop')",
}
MAX_LIMIT = 200


def badges(row: dict[str, Any]) -> list[str]:
    """The FLAGS that hold for a row, in FLAGS order (mirrors the SQL above)."""
    out = []
    if row.get("face_found"):
        out.append("face")
    if row.get("crop_mode_used") == "fallback" or row.get("fallback_reason"):
        out.append("fallback")
    if row.get("near_duplicate_of"):
        out.append("near_duplicate")
    if row.get("needs_manual_crop"):
        out.append("needs_manual_crop")
    if row.get("output_check") in ("moved", "needs_manual_crop"):
        out.append("face_check")
    return out


def encode_cursor(created_at: datetime, content_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{content_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for anything that is not a cursor this module made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, cid = raw.split("|", 1)
        created_at = datetime.fromisoformat(ts)
        if created_at.tzinfo is None:
            raise ValueError
        return created_at, uuid.UUID(cid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("invalid cursor (use next_cursor of the previous page)") from None


async def list_content(
    pool: asyncpg.Pool,
    *,
    status: str | None = None,
    creator: str | None = None,
    flags: list[str] | tuple[str, ...] = (),
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first (created_at desc, id desc). Returns (rows, next_cursor or None).
    Several flags must all hold. Raises ValueError for an unknown status/flag or a bad cursor."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise ValueError(f"unknown flag {unknown[0]!r}; one of {', '.join(FLAGS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_LIMIT}")
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if status is not None:
        where.append(f"status = {arg(status)}")
    if creator is not None:
        where.append(f"creator = {arg(creator)}")
    where.extend(FLAGS[f] for f in dict.fromkeys(flags))
    if cursor:
        created_at, cid = decode_cursor(cursor)
        where.append(f"(created_at, id) < ({arg(created_at)}, {arg(cid)})")
    sql = "SELECT * FROM content"
    if where:
        sql += " WHERE " + " AND ".join(where)
    # One row more than asked tells whether another page exists without a count(*).
    sql += f" ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}"
    rows = [dict(r) for r in await pool.fetch(sql, *args)]
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        return rows, encode_cursor(last["created_at"], last["id"])
    return rows, None


async def get_content(pool: asyncpg.Pool, content_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow("SELECT * FROM content WHERE id = $1", content_id)
    return dict(row) if row else None


async def status_counts(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """[{creator, status, count}] ordered by creator, then pipeline order of the status."""
    rows = await pool.fetch("SELECT creator, status, count(*) AS count FROM content GROUP BY creator, status")
    order = {s: i for i, s in enumerate(STATUSES)}
    out = [{"creator": r["creator"], "status": r["status"], "count": int(r["count"])} for r in rows]
    out.sort(key=lambda r: (r["creator"], order.get(r["status"], len(order)), r["status"]))
    return out


def stage_totals(counts: list[dict[str, Any]]) -> dict[str, int]:
    """{status: total over creators}, every known status present (0 when empty)."""
    totals = dict.fromkeys(STATUSES, 0)
    for c in counts:
        totals[c["status"]] = totals.get(c["status"], 0) + c["count"]
    return totals
