"""Reference data for a new site: the handling units of a city (its districts' centres,
plus functional areas such as 大鹏新区), idempotent so it can run on every start."""
from __future__ import annotations

from sqlalchemy.orm import Session

from case_bridge.models import HandlingUnit
from routing import load_divisions

# Functional areas that handle cases for some 街道 of a district (city, unit code, name, district, 街道)
FUNCTIONAL_AREAS = {
    "shenzhen": [("dapeng", "大鹏新区城市管理指挥中心", "440307", ["440307009", "440307010", "440307011"])],
}


def seed_units(session: Session, city: str = "shenzhen") -> list[str]:
    """Create missing handling units; returns the codes created (existing ones are left as edited)."""
    created = []
    for d in load_divisions(city):
        if d.level == "district" and session.get(HandlingUnit, d.code) is None:
            session.add(HandlingUnit(code=d.code, name=f"{d.name}城市管理指挥中心", kind="district_centre",
                                     district_code=d.code, street_codes=[], queue=f"district-{d.code}"))
            created.append(d.code)
    for code, name, district, streets in FUNCTIONAL_AREAS.get(city, []):
        if session.get(HandlingUnit, code) is None:
            session.add(HandlingUnit(code=code, name=name, kind="district_centre", district_code=district,
                                     street_codes=streets, queue=f"district-{code}"))
            created.append(code)
    session.flush()
    return created
