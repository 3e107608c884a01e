"""The district map, drawn on the server as a small inline SVG (no tiles, no script).

`district_map_svg(gazetteer, chosen, point)` draws every district of a gazetteer, marks the chosen
one and, when given, the caller's point (GCJ-02 lon, lat). The projected and simplified outlines
are computed once per gazetteer and width; a call after that only joins strings.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import shapely
from markupsafe import Markup, escape

PAD = 4.0                 # px of margin around the city
TOLERANCE_PX = 0.6        # how far a simplified outline may stray from the real one
MIN_PART_PX2 = 1.5        # islands smaller than this (in px²) are left out
FILL, FILL_CHOSEN, STROKE, POINT_FILL = "#e6ecf2", "#2f6fb2", "#ffffff", "#d9342b"


@dataclass(frozen=True)
class _Layout:
    """One gazetteer at one width: the projection and each district's escaped name and path data."""
    width: int
    height: int
    min_lon: float
    max_lat: float
    kx: float
    scale: float
    paths: tuple[tuple[str, str, str], ...]   # (code, escaped name, d)

    def project(self, lon: float, lat: float) -> tuple[float, float]:
        return PAD + (lon - self.min_lon) * self.kx * self.scale, PAD + (self.max_lat - lat) * self.scale


_layouts: weakref.WeakKeyDictionary[Any, dict[int, _Layout]] = weakref.WeakKeyDictionary()


def _num(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _ring(coords) -> str:
    points = [(_num(x), _num(y)) for x, y in coords]
    kept = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    if kept and kept[-1] == kept[0]:
        kept.pop()
    if len(kept) < 3:
        return ""
    return "M" + "L".join(f"{x} {y}" for x, y in kept) + "Z"


def _path_data(geom) -> str:
    parts = list(getattr(geom, "geoms", [geom]))
    parts = [p for p in parts if p.geom_type == "Polygon" and not p.is_empty]
    big = [p for p in parts if p.area >= MIN_PART_PX2] or sorted(parts, key=lambda p: -p.area)[:1]
    return "".join(_ring(r.coords) for p in big for r in (p.exterior, *p.interiors))


def _district_name(gazetteer, code: str) -> str:
    division = gazetteer.divisions.get(code)
    return str(getattr(division, "name", None) or code)


def _build(gazetteer, width: int) -> _Layout:
    codes = [c for c in gazetteer.district_codes if c in gazetteer.shapes and not gazetteer.shapes[c].is_empty]
    if not codes:
        return _Layout(width, width // 2, 0.0, 0.0, 1.0, 1.0, ())
    min_lon, min_lat, max_lon, max_lat = shapely.GeometryCollection([gazetteer.shapes[c] for c in codes]).bounds
    kx = math.cos(math.radians((min_lat + max_lat) / 2))
    span_x = max((max_lon - min_lon) * kx, 1e-9)
    scale = (width - 2 * PAD) / span_x
    height = max(1, math.ceil((max_lat - min_lat) * scale + 2 * PAD))

    def to_px(coords):
        out = coords.copy()
        out[:, 0] = PAD + (coords[:, 0] - min_lon) * kx * scale
        out[:, 1] = PAD + (max_lat - coords[:, 1]) * scale
        return out

    paths = []
    for code in codes:
        geom = shapely.transform(gazetteer.shapes[code], to_px).simplify(TOLERANCE_PX, preserve_topology=True)
        d = _path_data(geom)
        if d:
            paths.append((code, str(escape(_district_name(gazetteer, code))), d))
    return _Layout(width, height, min_lon, max_lat, kx, scale, tuple(paths))


def _layout(gazetteer, width: int) -> _Layout:
    try:
        by_width = _layouts.setdefault(gazetteer, {})
    except TypeError:      # neither weakly referable nor hashable (a stand-in object): no cache
        return _build(gazetteer, width)
    if width not in by_width:
        by_width[width] = _build(gazetteer, width)
    return by_width[width]


def district_map_svg(gazetteer, chosen: str | None = None, point: tuple[float, float] | None = None,
                     width: int = 320) -> Markup:
    """The districts as an inline SVG: the chosen one filled, the point (GCJ-02 lon, lat) as a dot.

    A point outside the drawn area is left out (the map shows only the city)."""
    width = max(40, int(width))
    layout = _layout(gazetteer, width)
    label = "区域地图"
    chosen_name = next((name for code, name, _ in layout.paths if code == chosen), None)
    if chosen_name:
        label += f"：{chosen_name}"     # already escaped
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="district-map" role="img" aria-label="{label}" '
           f'viewBox="0 0 {layout.width} {layout.height}" width="{layout.width}" height="{layout.height}">']
    # the chosen district last, so its outline is drawn on top of its neighbours'
    for code, name, d in sorted(layout.paths, key=lambda p: p[0] == chosen):
        mark = code == chosen
        out.append(f'<path class="district{" chosen" if mark else ""}" data-code="{escape(code)}" '
                   f'fill="{FILL_CHOSEN if mark else FILL}" stroke="{STROKE}" stroke-width="1" '
                   f'fill-rule="evenodd" d="{d}"><title>{name}</title></path>')
    if point is not None and layout.paths:
        try:
            x, y = layout.project(float(point[0]), float(point[1]))
        except (TypeError, ValueError, IndexError):
            x = y = math.nan
        if 0 <= x <= layout.width and 0 <= y <= layout.height:
            out.append(f'<circle class="point" cx="{_num(x)}" cy="{_num(y)}" r="4" fill="{POINT_FILL}" '
                       f'stroke="{STROKE}" stroke-width="1.5"><title>报告位置</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))
