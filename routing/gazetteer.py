"""A city's gazetteer folder: read and check every file, with errors that name file and line.

The folder format (documented in routing/GAZETTEER.md):

    gazetteer.toml          name, code, province; [successors] old district → districts cut out of it
    divisions.csv           level,code,name,parent_code      (required)
    boundaries/*.geojson    features with properties.code: 6 digits district (required), 9 街道,
                            12 社区, 14 unit grid (optional)
    addresses.csv           address,district_code,street_code,community_code,lon,lat   (optional)
    aliases.csv             alias,code,kind,note                                        (optional)
    roads.csv               road,district_code,from_number,to_number,note               (optional)
    rules.csv               place + category → handling unit (see routing/rules.py)       (optional)
"""
from __future__ import annotations

import csv
import io
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from routing.divisions import Division, DivisionError, read_divisions

ALIAS_KINDS = ("old_name", "area", "landmark", "road", "short_name")
CODE_LENGTHS = {6: "district", 9: "street", 12: "community", 14: "grid"}


class GazetteerError(ValueError):
    """A gazetteer folder is wrong; the message names the file and line."""


@dataclass(frozen=True)
class AddressRow:
    address: str
    district_code: str
    street_code: str | None
    community_code: str | None
    point: tuple[float, float] | None


@dataclass(frozen=True)
class AliasRow:
    alias: str
    code: str
    kind: str


@dataclass(frozen=True)
class RoadRow:
    road: str
    district_code: str
    numbers: tuple[int, int] | None


@dataclass
class Source:
    folder: Path
    name: str
    code: str
    province: str
    divisions: list[Division]
    boundaries: dict[str, dict[str, Any]]          # code → GeoJSON geometry
    addresses: list[AddressRow] = field(default_factory=list)
    aliases: list[AliasRow] = field(default_factory=list)
    roads: list[RoadRow] = field(default_factory=list)
    successors: dict[str, list[str]] = field(default_factory=dict)


def _rows(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise GazetteerError(f"{path}: cannot read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = required - set(reader.fieldnames or [])
    if missing:
        raise GazetteerError(f"{path}:1: missing columns {', '.join(sorted(missing))}")
    for line, row in enumerate(reader, start=2):
        yield line, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _point(path: Path, line: int, lon: str, lat: str) -> tuple[float, float] | None:
    if not lon and not lat:
        return None
    try:
        x, y = float(lon), float(lat)
    except ValueError:
        raise GazetteerError(f"{path}:{line}: lon/lat {lon!r},{lat!r} are not numbers") from None
    if not (73 <= x <= 136 and 3 <= y <= 54):
        raise GazetteerError(f"{path}:{line}: point {x},{y} is outside China (lon 73–136, lat 3–54)")
    return x, y


def read_source(folder: Path) -> Source:
    """Read a gazetteer folder; every problem is a GazetteerError naming its file and line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GazetteerError(f"{folder}: not a folder")
    meta_path = folder / "gazetteer.toml"
    try:
        meta = tomllib.loads(meta_path.read_text("utf-8"))
    except FileNotFoundError:
        raise GazetteerError(f"{meta_path}: missing (name, code, province)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GazetteerError(f"{meta_path}: {exc}") from None
    for key in ("name", "code"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise GazetteerError(f"{meta_path}: '{key}' is required (a string)")
    try:
        divisions = read_divisions(folder / "divisions.csv")
    except DivisionError as exc:
        raise GazetteerError(str(exc)) from None
    codes = {d.code: d for d in divisions}
    src = Source(folder, meta["name"], meta["code"], str(meta.get("province", "")), divisions,
                 _read_boundaries(folder, codes))
    for old, new in (meta.get("successors") or {}).items():
        if old not in codes or not isinstance(new, list) or any(c not in codes for c in new):
            raise GazetteerError(f"{meta_path}: successors.{old}: codes must be districts in divisions.csv")
        src.successors[old] = list(new)
    src.addresses = list(_read_addresses(folder / "addresses.csv", codes))
    src.aliases = list(_read_aliases(folder / "aliases.csv", codes))
    src.roads = list(_read_roads(folder / "roads.csv", codes))
    return src


def _read_boundaries(folder: Path, codes: dict[str, Division]) -> dict[str, dict[str, Any]]:
    shapes: dict[str, dict[str, Any]] = {}
    files = sorted((folder / "boundaries").glob("*.geojson"))
    for path in files:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise GazetteerError(f"{path}: not GeoJSON ({exc})") from None
        for n, feature in enumerate(data.get("features", []) if isinstance(data, dict) else [], start=1):
            props = feature.get("properties") or {}
            code = str(props.get("code") or props.get("adcode") or "")
            geometry = feature.get("geometry") or {}
            where = f"{path}: feature {n}"
            if len(code) not in CODE_LENGTHS or not code.isdigit():
                raise GazetteerError(f"{where}: properties.code {code!r} must be 6, 9, 12 or 14 digits")
            if len(code) < 14 and code not in codes:
                raise GazetteerError(f"{where}: code {code} is not in divisions.csv")
            if geometry.get("type") not in ("Polygon", "MultiPolygon"):
                raise GazetteerError(f"{where}: geometry must be a Polygon or MultiPolygon")
            shapes[code] = geometry
    districts = {c for c, d in codes.items() if d.level == "district"}
    if not files or not districts & shapes.keys():
        raise GazetteerError(f"{folder / 'boundaries'}: district polygons are required (*.geojson)")
    return shapes


def _read_addresses(path: Path, codes: dict[str, Division]) -> Iterator[AddressRow]:
    if not path.exists():
        return
    for line, row in _rows(path, {"address", "district_code"}):
        district = row["district_code"]
        street, community = row.get("street_code") or None, row.get("community_code") or None
        for code, level in ((district, "district"), (street, "street"), (community, "community")):
            if code and (code not in codes or codes[code].level != level):
                raise GazetteerError(f"{path}:{line}: {code} is not a {level} in divisions.csv")
        if not row["address"]:
            raise GazetteerError(f"{path}:{line}: address is empty")
        yield AddressRow(row["address"], district, street, community,
                         _point(path, line, row.get("lon", ""), row.get("lat", "")))


def _read_aliases(path: Path, codes: dict[str, Division]) -> Iterator[AliasRow]:
    if not path.exists():
        return
    seen: set[tuple[str, str]] = set()
    for line, row in _rows(path, {"alias", "code", "kind"}):
        alias, code, kind = row["alias"], row["code"], row["kind"]
        if len(alias) < 2:
            raise GazetteerError(f"{path}:{line}: alias {alias!r} is shorter than two characters")
        if code not in codes or codes[code].level == "city":
            raise GazetteerError(f"{path}:{line}: {code} is not a district, 街道 or 社区 in divisions.csv")
        if kind not in ALIAS_KINDS:
            raise GazetteerError(f"{path}:{line}: kind {kind!r} is not one of {', '.join(ALIAS_KINDS)}")
        if (alias, code) in seen:
            raise GazetteerError(f"{path}:{line}: {alias} → {code} is listed twice")
        seen.add((alias, code))
        yield AliasRow(alias, code, kind)


def _read_roads(path: Path, codes: dict[str, Division]) -> Iterator[RoadRow]:
    if not path.exists():
        return
    for line, row in _rows(path, {"road", "district_code"}):
        code = row["district_code"]
        if code not in codes or codes[code].level != "district":
            raise GazetteerError(f"{path}:{line}: {code} is not a district in divisions.csv")
        low, high = row.get("from_number", ""), row.get("to_number", "")
        numbers = None
        if low or high:
            if not (low.isdigit() and high.isdigit() and int(low) <= int(high)):
                raise GazetteerError(f"{path}:{line}: from_number/to_number must be whole numbers, from ≤ to")
            numbers = (int(low), int(high))
        yield RoadRow(row["road"], code, numbers)
