"""Possible repeats (重复发案): a new case with the same category as an open case, in the
same unit grid or within a set distance, inside a set time window. Flagged and linkable,
never silently merged: a person confirms (the newer case is voided as a repeat) or dismisses."""
from __future__ import annotations

import math
from datetime import timedelta

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


def flag_possible_repeats(session: Session, case: Case, settings: Settings) -> list[str]:
    """Link the new case to open cases it may repeat; returns their numbers."""
    if not case.category_key or (case.grid_code is None and case.lat is None):
        return []
    since = case.created_at - timedelta(hours=settings.duplicate_window_hours)
    q = select(Case).where(Case.id != case.id, Case.category_key == case.category_key,
                           Case.state.in_(OPEN_STATES), Case.created_at >= since)
    radius = settings.duplicate_distance_m
    if case.lat is not None:
        dlat = radius / 111_320 * 1.01
        dlon = dlat / max(0.01, math.cos(math.radians(case.lat)))
        near = (Case.lat.between(case.lat - dlat, case.lat + dlat) & Case.lon.between(case.lon - dlon, case.lon + dlon))
        q = q.where(near | (Case.grid_code == case.grid_code) if case.grid_code else near)
    else:
        q = q.where(Case.grid_code == case.grid_code)
    found = []
    for other in session.scalars(q.order_by(Case.id).limit(20)):
        if case.grid_code and other.grid_code == case.grid_code:
            reason = f"同一单元网格 {case.grid_code}"
        elif other.lat is not None and case.lat is not None:
            d = distance_m(case.lon, case.lat, other.lon, other.lat)
            if d > radius:
                continue
            reason = f"相距 {d:.0f} 米"
        else:
            continue
        session.add(CaseLink(case_id=case.id, other_case_id=other.id, reason=reason))
        found.append(other.number)
    session.flush()
    return found


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
