"""Administrative divisions (statistics-bureau codes): city → district → 街道 → 社区."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

LEVELS = {"city": 6, "district": 6, "street": 9, "community": 12}


class DivisionError(ValueError):
    """A divisions file is wrong; the message says where."""


@dataclass(frozen=True)
class Division:
    level: str
    code: str
    name: str
    parent_code: str


def load_divisions(city: str = "shenzhen") -> list[Division]:
    """The divisions shipped for a city, validated (codes of the right length, parents known)."""
    where = f"routing/data/{city}/divisions.csv"
    try:
        text = resources.files("routing").joinpath(f"data/{city}/divisions.csv").read_text("utf-8")
    except FileNotFoundError:
        raise DivisionError(f"{where}: no such city data") from None
    out: list[Division] = []
    codes: set[str] = set()
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        level, code = row.get("level", ""), row.get("code", "")
        if level not in LEVELS:
            raise DivisionError(f"{where}:{line}: unknown level {level!r}")
        if len(code) != LEVELS[level] or not code.isdigit():
            raise DivisionError(f"{where}:{line}: {level} code {code!r} must be {LEVELS[level]} digits")
        if level != "city" and row["parent_code"] not in codes:
            raise DivisionError(f"{where}:{line}: parent {row['parent_code']} of {code} is not listed before it")
        codes.add(code)
        out.append(Division(level, code, row["name"].strip(), row["parent_code"]))
    return out
