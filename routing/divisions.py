"""Administrative divisions (statistics-bureau codes): city → district → 街道 → 社区."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

LEVELS = {"city": 6, "district": 6, "street": 9, "community": 12}


class DivisionError(ValueError):
    """A divisions file is wrong; the message says where."""


@dataclass(frozen=True)
class Division:
    level: str
    code: str
    name: str
    parent_code: str


def packaged_city(city: str) -> Path:
    """The folder of a gazetteer shipped with the product (``shenzhen``, ``zhuhai``)."""
    return Path(str(resources.files("routing").joinpath(f"data/{city}")))


def load_divisions(city: str = "shenzhen") -> list[Division]:
    """The divisions shipped for a city, validated (codes of the right length, parents known)."""
    path = packaged_city(city) / "divisions.csv"
    if not path.is_file():
        raise DivisionError(f"routing/data/{city}/divisions.csv: no such city data")
    return read_divisions(path)


def read_divisions(path: Path) -> list[Division]:
    """Read and check a divisions.csv (level,code,name,parent_code); errors name the file and line."""
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DivisionError(f"{path}: cannot read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"level", "code", "name", "parent_code"} - set(reader.fieldnames or [])
    if missing:
        raise DivisionError(f"{path}:1: missing columns {', '.join(sorted(missing))}")
    out: list[Division] = []
    codes: set[str] = set()
    for line, row in enumerate(reader, start=2):
        level, code, name = row.get("level") or "", row.get("code") or "", (row.get("name") or "").strip()
        if level not in LEVELS:
            raise DivisionError(f"{path}:{line}: unknown level {level!r} (city, district, street, community)")
        if len(code) != LEVELS[level] or not code.isdigit():
            raise DivisionError(f"{path}:{line}: {level} code {code!r} must be {LEVELS[level]} digits")
        if not name:
            raise DivisionError(f"{path}:{line}: {code} has no name")
        if code in codes:
            raise DivisionError(f"{path}:{line}: code {code} is listed twice")
        if level != "city" and row["parent_code"] not in codes:
            raise DivisionError(f"{path}:{line}: parent {row['parent_code']} of {code} is not listed before it")
        codes.add(code)
        out.append(Division(level, code, name, row["parent_code"]))
    if not any(d.level == "district" for d in out):
        raise DivisionError(f"{path}: no districts")
    return out
