"""The CJ/T 214 category catalogue (部件 and 事件, 大类 and 小类, with search synonyms).

Data, not code: `case_bridge/data/categories.csv` or the file named by the
`categories_file` setting, validated on load with file and line in every error.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KEY = re.compile(r"^[CE]\d{4}$")  # C = 部件 (component), E = 事件 (event); 2-digit 大类 + 2-digit 小类
KINDS = {"部件": "C", "事件": "E"}


class CatalogueError(ValueError):
    """The catalogue file is wrong, or a key names no category."""


@dataclass(frozen=True)
class Category:
    key: str           # "E0102"
    kind: str          # "部件" | "事件"
    major_code: str    # "01"
    major_name: str    # "市容环境"
    minor_code: str    # "02"
    name: str          # "暴露垃圾"
    synonyms: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.major_name}/{self.name}"


class Catalogue:
    def __init__(self, categories: list[Category]) -> None:
        self._by_key = {c.key: c for c in categories}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self):
        return iter(self._by_key.values())

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: str) -> Category:
        try:
            return self._by_key[key]
        except KeyError:
            raise CatalogueError(f"unknown category {key!r}; see GET /api/v1/categories for the valid keys") from None

    def search(self, text: str, limit: int = 5) -> list[Category]:
        """Categories whose name or a synonym occurs in the text, longest match first."""
        scored = []
        for c in self._by_key.values():
            best = max((len(w) for w in (c.name, *c.synonyms) if w and w in text), default=0)
            if best:
                scored.append((best, c.key, c))
        return [c for _, _, c in sorted(scored, key=lambda t: (-t[0], t[1]))[:limit]]


def load_catalogue(path: Path | None = None) -> Catalogue:
    where = str(path) if path else "case_bridge/data/categories.csv"
    text = path.read_text("utf-8") if path else resources.files("case_bridge").joinpath("data/categories.csv").read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    need = {"key", "kind", "major_code", "major_name", "minor_code", "name", "synonyms"}
    if not reader.fieldnames or need - set(reader.fieldnames):
        raise CatalogueError(f"{where}: header must have the columns {sorted(need)}")
    categories: list[Category] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        key = (row["key"] or "").strip()
        if not KEY.match(key):
            raise CatalogueError(f"{where}:{line}: key {key!r} is not C or E followed by 4 digits")
        if key in seen:
            raise CatalogueError(f"{where}:{line}: key {key} appears twice")
        kind = row["kind"].strip()
        if KINDS.get(kind) != key[0]:
            raise CatalogueError(f"{where}:{line}: kind {kind!r} does not match key {key} (C=部件, E=事件)")
        if key[1:3] != row["major_code"].strip() or key[3:5] != row["minor_code"].strip():
            raise CatalogueError(f"{where}:{line}: key {key} does not match major/minor codes")
        if not row["name"].strip() or not row["major_name"].strip():
            raise CatalogueError(f"{where}:{line}: name and major_name must not be empty")
        seen.add(key)
        synonyms = tuple(s.strip() for s in (row["synonyms"] or "").split("|") if s.strip())
        categories.append(Category(key, kind, key[1:3], row["major_name"].strip(), key[3:5], row["name"].strip(), synonyms))
    if not categories:
        raise CatalogueError(f"{where}: no categories")
    return Catalogue(categories)
