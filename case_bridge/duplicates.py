"""Possible repeats (重复发案): a new case with the same category as an open case, in the
same unit grid or within a set distance, inside a set time window. Flagged and linkable,
never silently merged: a person confirms (the newer case is voided as a repeat) or dismisses."""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from case_bridge.models import Case, CaseLink
from case_bridge.workflow import OPEN_STATES
from hotline.settings import Settings

EARTH_M = 6_371_000.0


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


def candidates(session: Session, settings: Settings, category_key: str | None, grid_code: str | None,
               lon: float | None, lat: float | None, at: datetime, exclude_id: int | None = None) -> list[tuple[Case, str]]:
    """Open cases of the same category, in the same grid or near, recent: each with the reason in words.
    Writes nothing (the desk shows them before submit)."""
    if not category_key or (grid_code is None and lat is None):
        return []
    since = at - timedelta(hours=settings.duplicate_window_hours)
    q = select(Case).where(Case.id != (exclude_id or 0), Case.category_key == category_key,
                           Case.state.in_(OPEN_STATES), Case.created_at >= since)
    radius = settings.duplicate_distance_m
    if lat is not None and lon is not None:
        dlat = radius / 111_320 * 1.01
        dlon = dlat / max(0.01, math.cos(math.radians(lat)))
        near = (Case.lat.between(lat - dlat, lat + dlat) & Case.lon.between(lon - dlon, lon + dlon))
        q = q.where(near | (Case.grid_code == grid_code) if grid_code else near)
    else:
        q = q.where(Case.grid_code == grid_code)
    found = []
    for other in session.scalars(q.order_by(Case.id).limit(20)):
        if grid_code and other.grid_code == grid_code:
            reason = f"同一单元网格 {grid_code}"
        elif other.lat is not None and lat is not None and lon is not None:
            d = distance_m(lon, lat, other.lon, other.lat)
            if d > radius:
                continue
            reason = f"相距 {d:.0f} 米"
        else:
            continue
        found.append((other, reason))
    return found


def flag_possible_repeats(session: Session, case: Case, settings: Settings) -> list[str]:
    """Link the new case to open cases it may repeat; returns their numbers."""
    found = candidates(session, settings, case.category_key, case.grid_code, case.lon, case.lat, case.created_at,
                       exclude_id=case.id)
    for other, reason in found:
        session.add(CaseLink(case_id=case.id, other_case_id=other.id, reason=reason))
    session.flush()
    return [other.number for other, _ in found]


def confirm(session: Session, case: Case, master: Case) -> None:
    """Record that `case` repeats `master` (called when the newer case is voided as a repeat)."""
    link = session.scalar(select(CaseLink).where(CaseLink.case_id == case.id, CaseLink.other_case_id == master.id,
                                                 CaseLink.kind == "possible_duplicate"))
    if link is None:
        link = CaseLink(case_id=case.id, other_case_id=master.id, reason="人工确认")
        session.add(link)
    link.status = "confirmed"
    session.flush()


def dismiss(session: Session, case: Case, link_id: int) -> CaseLink:
    link = session.get(CaseLink, link_id)
    if link is None or case.id not in (link.case_id, link.other_case_id):
        raise LookupError(f"no link {link_id} on case {case.number}")
    link.status = "dismissed"
    session.flush()
    return link
