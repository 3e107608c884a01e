"""From address text or a point to a `Placement`: district, 街道, 社区, unit grid, point,
a calibrated confidence, the evidence behind it, and the runners-up.

Every name found in the text is a piece of evidence: with probability `weight` it names the
place it says, otherwise it says nothing. The districts' posteriors follow from multiplying
the pieces (a mixture model per piece, so one wrong name cannot veto the rest). An address
that says an old district and a newer one's 街道 (宝安区龙华街道) counts the old name for the
district cut out of it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from shapely.geometry import Point

from routing.index import SOUND_FACTOR, WEIGHTS, Gazetteer, Place
from routing.text import GENERIC_SUFFIXES, HOUSE_PART_RE

MAX_TEXT = 1000               # characters looked at; an address is never longer
MIN_ALTERNATIVE = 0.02
_HOUSE_NUMBER = re.compile(r"\s?(\d{1,5})号")
_PHONE_ONLY = re.compile(r"[\d\-\s+()]{5,}")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_DISTRICT_KINDS = ("district", "district_short", "old_name")
_BORDER_METRES = 50
_SHORT = ("_short", "_short2")
_ESTATE_ENDINGS = set("阁楼轩苑园居厦座庄府邸湾城苑院舍坊宫台")


@dataclass(frozen=True)
class Alternative:
    district_code: str
    name: str
    confidence: float


@dataclass(frozen=True)
class Placement:
    district_code: str | None
    street_code: str | None = None
    community_code: str | None = None
    grid_code: str | None = None
    point: tuple[float, float] | None = None          # GCJ-02 lon, lat
    confidence: float = 0.0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    reason: str = ""                                   # why unplaced, or a note on a placement
    names: dict[str, str] = field(default_factory=dict)  # code → name, for display

    @property
    def placed(self) -> bool:
        return self.district_code is not None

    def confident(self, threshold: float) -> bool:
        return self.placed and self.confidence >= threshold

    def as_dict(self) -> dict[str, Any]:
        return {"district_code": self.district_code, "street_code": self.street_code,
                "community_code": self.community_code, "grid_code": self.grid_code,
                "point": list(self.point) if self.point else None, "confidence": self.confidence,
                "evidence": self.evidence, "reason": self.reason, "names": self.names,
                "alternatives": [a.__dict__ for a in self.alternatives]}


def unplaced(reason: str, evidence: list[dict[str, Any]] | None = None) -> Placement:
    return Placement(None, reason=reason, evidence=evidence or [])


@dataclass(slots=True)
class _Match:
    start: int
    end: int
    place: Place
    weight: float
    shares: tuple[tuple[str, float], ...]
    how: str = "name"


def _select(found: list[tuple[int, int, Place]]) -> list[tuple[int, int, list[Place]]]:
    """Longest names first (then the more trusted, then leftmost); a name inside or across a
    chosen one is not counted again. Places sharing one span are one piece of evidence."""
    found.sort(key=lambda f: (f[0] - f[1], -f[2].weight, f[0]))
    spans: dict[tuple[int, int], list[Place]] = {}
    for start, end, place in found:
        if (start, end) in spans:
            if place not in spans[(start, end)]:
                spans[(start, end)].append(place)
        elif not any(s < end and start < e for s, e in spans):
            spans[(start, end)] = [place]
    return sorted(((s, e, places) for (s, e), places in spans.items()), key=lambda x: x[0])


def _match(start: int, end: int, places: list[Place], factor: float = 1.0, how: str = "name") -> _Match:
    if len(places) == 1:
        p = places[0]
        return _Match(start, end, p, p.weight * factor, p.shares, how)
    total = sum(p.weight for p in places)
    shares: dict[str, float] = {}
    for p in places:
        for code, share in p.shares:
            shares[code] = shares.get(code, 0.0) + share * p.weight / total
    best = max(places, key=lambda p: p.weight)
    return _Match(start, end, best, best.weight * factor, tuple(sorted(shares.items(), key=lambda kv: -kv[1])), how)


def _find(gz: Gazetteer, text: str) -> list[_Match]:
    found: list[tuple[int, int, Place]] = []
    for stop, (length, ids) in gz.automaton.iter(text):
        found.extend((stop + 1 - length, stop + 1, gz.places[pid]) for pid in ids)
    learned, learned_places = gz.learned_index()
    if learned_places:
        for stop, (length, ids) in learned.iter(text):
            found.extend((stop + 1 - length, stop + 1, learned_places[i]) for i in ids)
    matches: list[_Match] = []
    seen: set[tuple[int, ...]] = set()
    for s, e, places in _select(found):   # the same name said twice is one piece of evidence
        if (ident := tuple(map(id, places))) not in seen:
            seen.add(ident)
            matches.append(_match(s, e, places))
    covered = [(m.start, m.end) for m in matches]
    sounded: list[tuple[int, int, Place]] = []
    for stop, (length, ids) in gz.sound_automaton.iter(text.translate(gz.to_sound)):
        start = stop + 1 - length
        if not any(s < stop + 1 and start < e for s, e in covered):
            sounded.extend((start, stop + 1, gz.places[pid]) for pid in ids)
    matches.extend(_match(s, e, places, SOUND_FACTOR, "sound") for s, e, places in _select(sounded))
    house = HOUSE_PART_RE.search(text)
    house_start = house.start() if house else len(text)
    for m in matches:
        if m.place.kind == "road_span":
            _number_road(gz, text, m)
        elif m.place.kind.endswith(_SHORT):
            if m.start >= house_start:           # 5栋宝龙阁: a building's name, not the 街道
                m.weight, m.how = min(m.weight, 0.5), "after the house part"
            elif text[m.end:m.end + 1] in _ESTATE_ENDINGS or text.startswith(GENERIC_SUFFIXES, m.end):  # 同乐大厦, 翠竹园: an estate named after a place
                m.weight, m.how = m.weight * 0.75, "part of an estate name"
    return matches


def _number_road(gz: Gazetteer, text: str, m: _Match) -> None:
    """A road through several districts is decided by its house number where the ranges are known."""
    spans = gz.road_numbers[m.place.label]
    number = _HOUSE_NUMBER.match(text, m.end)
    if number is None:
        return
    n = int(number.group(1))
    hits = sorted({d for d, rng in spans if rng and rng[0] <= n <= rng[1]})
    if hits:
        m.shares = tuple((d, 1 / len(hits)) for d in hits)
        m.weight = WEIGHTS["road_numbered"]
        m.how = f"house number {n}"


def _district_shares(gz: Gazetteer, m: _Match) -> dict[str, float]:
    out: dict[str, float] = {}
    for code, share in m.shares:
        if len(code) == 6:
            out[code] = out.get(code, 0.0) + share
    if not out:  # a name of a 街道 or 社区 only
        for code, share in m.shares:
            d = gz.district_of(code)
            out[d] = out.get(d, 0.0) + share
    return out


def locate_in(gz: Gazetteer, text: Any) -> Placement:
    """Place `text` with gazetteer `gz`. Never raises on bad input: unplaced, with the reason."""
    if not isinstance(text, str):
        return unplaced("no address text")
    if not text.strip():
        return unplaced("the address is empty")
    t = gz.cleaner.clean(text[: MAX_TEXT * 2])[:MAX_TEXT]
    if not _HAN.search(t):
        if _PHONE_ONLY.fullmatch(text.strip()):
            return unplaced("only a phone number: no address")
        return unplaced("no Chinese place name in the text")
    if not any(c in t for c in gz.city_names):
        for stop, (length, _) in gz.other_automaton.iter(t):
            other = t[stop + 1 - length:stop + 1]
            return unplaced(f"the address is in {other}, not {gz.name}")
    matches = _find(gz, t)
    if not matches:
        return unplaced(f"no name of a place in {gz.name} found in the text")
    return _decide(gz, t, matches)


def _decide(gz: Gazetteer, text: str, matches: list[_Match]) -> Placement:
    shares = [_district_shares(gz, m) for m in matches]
    lower = {d for m, s in zip(matches, shares) if m.place.kind not in _DISTRICT_KINDS and m.weight >= 0.9 for d in s}
    for m, s in zip(matches, shares):  # 宝安区 + a 街道 of 龙华区: the old district name fits 龙华 too
        if m.place.kind in _DISTRICT_KINDS and len(s) == 1:
            (old,) = s
            newer = [d for d in gz.successors.get(old, ()) if d in lower]
            if newer:
                s.clear()
                s.update({d: 1 / (len(newer) + 1) for d in (old, *newer)})
    k = len(gz.district_codes)
    log_post = dict.fromkeys(gz.district_codes, 0.0)
    for m, s in zip(matches, shares):
        floor = (1 - m.weight) / k
        for d in log_post:
            log_post[d] += math.log(m.weight * s.get(d, 0.0) + floor)
    top = max(log_post.values())
    post = {d: math.exp(v - top) for d, v in log_post.items()}
    total = sum(post.values())
    ranked = sorted(((p / total, d) for d, p in post.items()), reverse=True)
    confidence, district = ranked[0]
    street, community, point = _lower_levels(gz, district, matches)
    evidence = [{"text": text[m.start:m.end], "name": m.place.label, "kind": m.place.kind, "how": m.how,
                 "codes": [c for c, _ in m.shares][:4], "weight": round(m.weight, 3)} for m in matches]
    grid = _grid(gz, point, community)
    names = {c: gz.name_of(c) for c in (district, street, community) if c}
    alternatives = [Alternative(d, gz.name_of(d), round(p, 4)) for p, d in ranked[1:4] if p >= MIN_ALTERNATIVE]
    return Placement(district, street, community, grid, point, round(confidence, 4), evidence, alternatives,
                     names=names)


def _lower_levels(gz: Gazetteer, district: str, matches: list[_Match]):
    streets: dict[str, float] = {}
    communities: dict[str, float] = {}
    point, point_weight = None, 0.0
    for m in matches:
        for code, share in m.shares:
            if len(code) > 6 and gz.district_of(code) == district:
                bucket = streets if len(code) == 9 else communities
                bucket[code] = bucket.get(code, 0.0) + m.weight * share
        if m.place.point and m.weight > point_weight and m.shares[0][0] == district:
            point, point_weight = m.place.point, m.weight
    for code, score in communities.items():  # a 社区 also says its 街道
        parent = gz.divisions[code].parent_code
        streets[parent] = streets.get(parent, 0.0) + score
    street = max(streets, key=streets.get) if streets else None
    candidates = {c: s for c, s in communities.items() if gz.divisions[c].parent_code == street}
    community = max(candidates, key=candidates.get) if candidates else None
    return street, community, point


def _grid(gz: Gazetteer, point: tuple[float, float] | None, community: str | None) -> str | None:
    if point is not None:
        here = Point(point)
        for code, geom in gz.shapes.items():
            if len(code) == 14 and geom.contains(here):
                return code
    return community + "00" if community else None


def locate_point_in(gz: Gazetteer, lon: float, lat: float, datum: str = "gcj02") -> Placement:
    """Place a point (GCJ-02, WGS-84 or BD-09) by the boundary polygons it falls in."""
    import prcoords

    try:
        lon, lat = float(lon), float(lat)
    except (TypeError, ValueError):
        return unplaced("the point is not a pair of numbers")
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        return unplaced("the point is not a longitude and latitude")
    if not isinstance(datum, str):
        return unplaced("the datum must be gcj02, wgs84 or bd09")
    datum = datum.lower().replace("-", "")
    if datum in ("wgs84", "gps"):
        lat, lon = prcoords.wgs_gcj((lat, lon))
    elif datum in ("bd09", "baidu"):
        lat, lon = prcoords.bd_gcj((lat, lon))
    elif datum not in ("gcj02", "amap", "tencent"):
        return unplaced(f"unknown datum {datum!r}: gcj02, wgs84 or bd09")
    here = Point(lon, lat)
    inside = {code: geom for code, geom in gz.shapes.items() if geom.contains(here)}
    by_len = {len(c): c for c in inside}
    district = by_len.get(6)
    metres = 111_000
    if district is None:
        near = sorted((geom.distance(here) * metres, code) for code, geom in gz.shapes.items() if len(code) == 6)
        if not near or near[0][0] > 500:
            return unplaced(f"the point {lon:.6f},{lat:.6f} is outside {gz.name}")
        district, confidence, note = near[0][1], 0.6, f"{near[0][0]:.0f} m outside the boundary"
    else:
        edge = gz.shapes[district].boundary.distance(here) * metres
        confidence, note = (0.99, "") if edge >= _BORDER_METRES else (0.8, f"{edge:.0f} m from the district boundary")
    alternatives = []
    if confidence < 0.99:
        others = sorted((geom.distance(here), code) for code, geom in gz.shapes.items()
                        if len(code) == 6 and code != district)
        if others:
            alternatives.append(Alternative(others[0][1], gz.name_of(others[0][1]), round(1 - confidence, 4)))
    street, community = by_len.get(9), by_len.get(12)
    grid = by_len.get(14) or (community + "00" if community else None)
    names = {c: gz.name_of(c) for c in (district, street, community) if c}
    evidence = [{"text": f"{lon:.6f},{lat:.6f}", "name": names[district], "kind": "point", "how": "polygon",
                 "codes": [c for c in (district, street, community, grid) if c], "weight": confidence}]
    return Placement(district, street, community, grid, (round(lon, 6), round(lat, 6)), confidence, evidence,
                     alternatives, reason=note, names=names)
