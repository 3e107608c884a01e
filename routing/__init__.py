"""Routing: from what a caller says to a place, and from a place to who handles it.

    locate(text)                    → Placement (district, 街道, 社区, grid, point, confidence, evidence, alternatives)
    locate_point(lon, lat, datum)   → Placement by the boundary polygons
    load_rules(path).route(...)     → Route (handling unit, call-transfer target)

Both locate functions use the installed default gazetteer (Shenzhen unless `install` was
given another) or the one passed as `gazetteer=`. `routing` imports no other part and does
no I/O at call time: gazetteers are compiled once (`import_gazetteer`, `hotline routing import`).
"""
from __future__ import annotations

import threading
from pathlib import Path

from routing.configured import INSTALLED_INDEX, configured_rules_file, gazetteer_source, load_configured
from routing.evaluate import EvalFileError, format_report, read_labelled
from routing.evaluate import evaluate as evaluate_labelled
from routing.divisions import Division, DivisionError, load_divisions, packaged_city
from routing.gazetteer import GazetteerError, read_source
from routing.index import Gazetteer, load_index
from routing.locate import Alternative, Placement, locate_in, locate_point_in
from routing.rules import Route, Rules, RulesError, load_rules

__all__ = ["INSTALLED_INDEX", "EvalFileError", "evaluate_labelled", "format_report", "read_labelled", "Alternative", "Division", "DivisionError", "Gazetteer", "GazetteerError", "Placement", "Route",
           "Rules", "RulesError", "compile_gazetteer", "default_gazetteer", "import_gazetteer", "install",
           "configured_rules_file", "gazetteer_source", "load_configured", "load_divisions", "load_gazetteer",
           "load_rules", "locate", "locate_point", "packaged_city"]

INDEX_FILE = "index.pickle"
_default: Gazetteer | None = None
_lock = threading.Lock()


def compile_gazetteer(folder: Path | str, progress=None) -> Gazetteer:
    """Read and check a gazetteer folder (GazetteerError names file and line) and compile it."""
    source = read_source(Path(folder))
    return Gazetteer(source, progress) if progress else Gazetteer(source)


def import_gazetteer(folder: Path | str, dest: Path | str, progress=None) -> Gazetteer:
    """Compile a city's folder and write the index to `dest`; `load_gazetteer(dest)` reads it back."""
    gz = compile_gazetteer(folder, progress)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    gz.save(tmp)
    tmp.replace(dest)
    return gz


def load_gazetteer(where: Path | str) -> Gazetteer:
    """A compiled index file, a gazetteer folder, or the name of a shipped city (shenzhen, zhuhai)."""
    path = Path(where)
    if path.is_file():
        return load_index(path)
    if not path.is_dir():
        path = packaged_city(str(where))
        if not path.is_dir():
            raise GazetteerError(f"{where}: not an index file, a gazetteer folder or a shipped city")
    if (path / INDEX_FILE).is_file():
        return load_index(path / INDEX_FILE)
    return compile_gazetteer(path)


def install(gz: Gazetteer) -> Gazetteer:
    """Make `gz` the gazetteer `locate` and `locate_point` use by default."""
    global _default
    _default = gz
    return gz


def default_gazetteer() -> Gazetteer:
    global _default
    with _lock:
        if _default is None:
            _default = load_gazetteer("shenzhen")
        return _default


def locate(text: str, gazetteer: Gazetteer | None = None) -> Placement:
    """Place address text; an unplaced Placement (district_code None) says why."""
    return locate_in(gazetteer or default_gazetteer(), text)


def locate_point(lon: float, lat: float, datum: str = "gcj02", gazetteer: Gazetteer | None = None) -> Placement:
    """Place a point; datum gcj02 (Chinese web maps), wgs84 (GPS) or bd09 (Baidu)."""
    return locate_point_in(gazetteer or default_gazetteer(), lon, lat, datum)
