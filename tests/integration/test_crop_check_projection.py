"""The crop's output-check verdict (image.cropped) through the tracker into Postgres (migration
0004), and the review list's `face_check` flag and badge over the real table."""

from __future__ import annotations

import uuid

from vaultline.adapters.db import PostgresUnitOfWorkFactory
from vaultline.adapters.db import review as queries
from vaultline.events import new_event
from vaultline.handlers import tracker


async def crop_with(uow, verdict: str | None, faces: int | None) -> uuid.UUID:
    cid = uuid.uuid4()
    g = new_event(
        "image.generated", creator="elena", key=cid,
        payload={"storage_key": f"elena/1_raw/{cid}.png", "sha256": uuid.uuid4().hex * 2, "phash": "00ff00ff00ff00ff",
                 "size_bytes": 1, "original_filename": "x.png"},
    )  # fmt: skip
    extra = {} if verdict is None else {"output_check": verdict, "output_check_faces": faces}
    c = new_event(
        "image.cropped", creator="elena", key=cid, cause=g,
        payload={"cropped_key": f"elena/2_cropped/{cid}.png", "review_key": f"elena/3_review/{cid}.png",
                 "mode_used": "no_face", "face_found": True, "faces": 2, "cut_y": 700, **extra},
    )  # fmt: skip
    for e in (g, c):
        await tracker.handle(e, uow=uow)
    return cid


async def test_the_verdict_is_projected_filtered_and_badged(pool):
    uow = PostgresUnitOfWorkFactory(pool)
    passed = await crop_with(uow, "passed", 0)
    moved = await crop_with(uow, "moved", 1)
    manual = await crop_with(uow, "needs_manual_crop", 2)
    before = await crop_with(uow, None, None)  # cropped before the check existed

    rows = {r["id"]: r for r in (await queries.list_content(pool, status="in_review"))[0]}
    assert (rows[moved]["output_check"], rows[moved]["output_check_faces"]) == ("moved", 1)
    assert (rows[passed]["output_check"], rows[passed]["output_check_faces"]) == ("passed", 0)
    assert (rows[before]["output_check"], rows[before]["output_check_faces"]) == (None, None)

    flagged, _ = await queries.list_content(pool, flags=["face_check"])
    assert {r["id"] for r in flagged} == {moved, manual}
    assert "face_check" in queries.badges(rows[moved])
    assert "face_check" not in queries.badges(rows[passed]) and "face_check" not in queries.badges(rows[before])
