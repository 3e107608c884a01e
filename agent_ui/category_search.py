"""The category picker's search over the CJ/T 214 catalogue: by name, synonym, key and pinyin.

`CategoryIndex(catalogue)` precomputes each category's words and their pinyin once;
`search("ljdj")` then ranks (best first):

    exact key or name > key or name prefix > name contains > synonym (exact, prefix, contains)
    > pinyin initials prefix > full pinyin prefix > pinyin initials contained

ties by key. `suggest(description)` proposes categories for what a caller said.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pypinyin import Style, lazy_pinyin

from case_bridge import Catalogue, Category

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_SPACES = re.compile(r"[\s'’·]+")


def _letters(parts: list[str]) -> str:
    return _NOT_ALNUM.sub("", "".join(parts).lower())


@dataclass(frozen=True, slots=True)
class _Entry:
    category: Category
    key: str                        # lower case
    name: str
    synonyms: tuple[str, ...]
    initials: tuple[str, ...]       # of the name and each synonym: "ljdj"
    full: tuple[str, ...]           # "lajiduiji"


def _entry(c: Category) -> _Entry:
    words = (c.name, *c.synonyms)
    return _Entry(c, c.key.lower(), c.name.lower(), tuple(s.lower() for s in c.synonyms),
                  tuple(_letters(lazy_pinyin(w, style=Style.FIRST_LETTER)) for w in words),
                  tuple(_letters(lazy_pinyin(w)) for w in words))


def _rank(e: _Entry, q: str, ascii_query: bool) -> int | None:
    if q == e.key or q == e.name:
        return 0
    if e.key.startswith(q) or e.name.startswith(q):
        return 1
    if q in e.name:
        return 2
    if q in e.synonyms:
        return 3
    if any(s.startswith(q) for s in e.synonyms):
        return 4
    if any(q in s for s in e.synonyms):
        return 5
    if not ascii_query:
        return None
    if any(i.startswith(q) for i in e.initials):
        return 6
    if any(f.startswith(q) for f in e.full):
        return 7
    if any(q in i for i in e.initials):
        return 8
    return None


class CategoryIndex:
    """Built once from a catalogue; searching is a scan of ~150 precomputed entries."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._entries = [_entry(c) for c in sorted(catalogue, key=lambda c: c.key)]

    def search(self, query: str, limit: int = 12) -> list[Category]:
        """Categories matching what the agent typed (汉字, key such as E0102, or pinyin), best first."""
        q = _SPACES.sub("", query or "").lower()
        if not q or limit <= 0:
            return []
        ascii_query = q.isascii() and q.isalnum()
        ranked = []
        for e in self._entries:          # already in key order, and sorted() is stable
            rank = _rank(e, q, ascii_query)
            if rank is not None:
                ranked.append((rank, e.category))
        ranked.sort(key=lambda t: t[0])
        return [c for _, c in ranked[:limit]]

    def suggest(self, description: str, limit: int = 3) -> list[Category]:
        """Categories whose name or a synonym occurs in the description, longest match first."""
        text = (description or "").strip()
        if not text or limit <= 0:
            return []
        return self.catalogue.search(text, limit)
