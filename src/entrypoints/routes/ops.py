"""Operations API: GET /api/problems, the watched files that never became an image (newest
first), the same list `vaultline status` shows. The admin token is checked by the middleware."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from vaultline.adapters.db.problems import recent_problems
from vaultline.entrypoints.admin import Services, services

router = APIRouter(tags=["ops"])


class Problem(BaseModel):
    id: int
    creator: str
    path: str  # where the file was found
    moved_to: str | None  # its library key under <creator>/rejected/, None if it could not be moved
    reason: str
    recorded_at: datetime


class ProblemsOut(BaseModel):
    problems: list[Problem]


@router.get("/api/problems", response_model=ProblemsOut)
async def problems(
    limit: Annotated[int, Query(ge=1, le=500)] = 50, svc: Services = Depends(services)
) -> ProblemsOut:
    return ProblemsOut(problems=[Problem(**p) for p in await recent_problems(svc.pool, limit)])
