"""Where a case is and who handles it: the case core's use of `routing`.

One `Router` per process: the gazetteer and rules the settings name, plus the placements people
confirmed (`address_evidence`), read incrementally so every process learns what any other
recorded. Locating is pure and fast; the lock only guards the learned layer.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import routing
from case_bridge.models import AddressEvidence, Case
from hotline.db import utcnow
from hotline.settings import Settings

INSTALLED_INDEX = routing.INSTALLED_INDEX


def gazetteer_source(settings: Settings) -> str:
    """What the settings name as the gazetteer, resolved to a shipped city, a folder or an index file."""
    return routing.gazetteer_source(settings.gazetteer, settings.data_dir)


def load_settings_gazetteer(settings: Settings) -> routing.Gazetteer:
    return routing.load_configured(gazetteer_source(settings))


def rules_file(settings: Settings) -> Path | None:
    return routing.configured_rules_file(gazetteer_source(settings), settings.routing_rules_file)


class Router:
    def __init__(self, settings: Settings, gazetteer: routing.Gazetteer | None = None) -> None:
        # a copy: what this router learns stays with it (the compiled names are shared)
        self.gazetteer = (gazetteer or load_settings_gazetteer(settings)).with_fresh_learning()
        self.rules = routing.load_rules(rules_file(settings))
        self.threshold = settings.auto_route_threshold
        self._seen_id = 0
        self._lock = threading.RLock()

    def learn_confirmed(self, session: Session) -> None:
        """Learn the placements confirmed since the last call (by any process)."""
        with self._lock:
            rows = session.execute(select(AddressEvidence.id, AddressEvidence.address_text, AddressEvidence.district_code,
                                          AddressEvidence.street_code, AddressEvidence.community_code,
                                          AddressEvidence.lon, AddressEvidence.lat)
                                   .where(AddressEvidence.id > self._seen_id).order_by(AddressEvidence.id)).all()
            for row in rows:
                if row.district_code in self.gazetteer.district_codes:
                    point = (row.lon, row.lat) if row.lon is not None and row.lat is not None else None
                    self.gazetteer.learn(row.address_text, row.district_code, row.street_code, row.community_code, point)
                self._seen_id = row.id

    def locate(self, session: Session | None, text: str) -> routing.Placement:
        with self._lock:
            if session is not None:
                self.learn_confirmed(session)
            return routing.locate(text, gazetteer=self.gazetteer)

    def locate_point(self, lon: float, lat: float, datum: str = "gcj02") -> routing.Placement:
        return routing.locate_point(lon, lat, datum, gazetteer=self.gazetteer)

    def route(self, case: Case) -> routing.Route:
        return self.rules.route(case.district_code, case.street_code, case.category_key, case.request_type)

    def confirm(self, session: Session, case: Case, source: str) -> AddressEvidence | None:
        """Record that a person confirmed the case's district for its address."""
        if not case.district_code or not case.address_text.strip():
            return None
        row = AddressEvidence(case_id=case.id, address_text=case.address_text, district_code=case.district_code,
                              street_code=case.street_code, community_code=case.community_code,
                              lon=case.lon, lat=case.lat, source=source, created_at=utcnow())
        session.add(row)
        return row


def placement_summary(p: routing.Placement) -> dict[str, Any]:
    """What the timeline keeps of a placement: enough to see later why a case went where it went."""
    return {"district_code": p.district_code, "confidence": p.confidence, "reason": p.reason,
            "evidence": [f"{e['text']}→{e['name']}({e['kind']})" for e in p.evidence][:8],
            "alternatives": [{"district_code": a.district_code, "name": a.name, "confidence": a.confidence}
                             for a in p.alternatives]}
