"""The knowledge base (知识库): standard answers the agents read out for consultations.

Data, not code: `agent_ui/data/knowledge.json` (a list of {id, question, answer, category_key,
keywords}), validated on load with the file and the entry in every error. `search` finds entries
by question, keyword (also by a keyword's pinyin initials: "zxlj" → 装修垃圾) and answer text.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pypinyin import Style, lazy_pinyin

CATEGORY_KEY = re.compile(r"^[CE]\d{4}$")   # as in the CJ/T 214 catalogue
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


class KnowledgeError(ValueError):
    """The knowledge file is wrong; the message names the file and the entry."""


@dataclass(frozen=True)
class Entry:
    id: str
    question: str
    answer: str
    category_key: str | None = None
    keywords: tuple[str, ...] = ()


def _initials(word: str) -> str:
    return _NOT_ALNUM.sub("", "".join(lazy_pinyin(word, style=Style.FIRST_LETTER)).lower())


def _rank(e: Entry, initials: tuple[str, ...], term: str) -> int | None:
    """How well one search term fits an entry (lower is better), None when it does not."""
    if term in e.question.lower():
        return 0
    keywords = [k.lower() for k in e.keywords]
    if any(term in k for k in keywords):
        return 1
    if any(len(k) >= 2 and k in term for k in keywords):   # a whole sentence that names a keyword
        return 2
    if term.isascii() and term.isalnum() and any(i.startswith(term) for i in initials):
        return 3
    if term in e.answer.lower():
        return 4
    return None


class KnowledgeBase:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = tuple(entries)
        self._by_id = {e.id: e for e in self.entries}
        self._initials = {e.id: tuple(_initials(k) for k in e.keywords) for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def get(self, entry_id: str) -> Entry:
        try:
            return self._by_id[entry_id]
        except KeyError:
            raise KeyError(f"no knowledge entry {entry_id!r}") from None

    def search(self, query: str, limit: int = 5) -> list[Entry]:
        """Entries matching every word of the query, best first; an empty query gives the first ones."""
        terms = (query or "").lower().split()
        if limit <= 0:
            return []
        if not terms:
            return list(self.entries[:limit])
        scored = []
        for pos, e in enumerate(self.entries):
            ranks = [_rank(e, self._initials[e.id], t) for t in terms]
            if None not in ranks:
                scored.append((sum(ranks), pos, e))
        scored.sort(key=lambda t: t[:2])
        return [e for _, _, e in scored[:limit]]


def _entry(where: str, n: int, raw: object, seen: dict[str, int]) -> Entry:
    name = f"{where}: entry {n}"
    if not isinstance(raw, dict):
        raise KnowledgeError(f"{name}: must be an object with id, question, answer, category_key, keywords")
    entry_id = raw.get("id")
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise KnowledgeError(f"{name}: id must be a non-empty string")
    name = f"{where}: entry {n} (id {entry_id!r})"
    if entry_id in seen:
        raise KnowledgeError(f"{name}: id already used by entry {seen[entry_id]}")
    unknown = set(raw) - {"id", "question", "answer", "category_key", "keywords"}
    if unknown:
        raise KnowledgeError(f"{name}: unknown fields {sorted(unknown)}")
    for field in ("question", "answer"):
        value = raw.get(field)
        if not isinstance(value, str) or not value.strip():
            raise KnowledgeError(f"{name}: {field} must be a non-empty string")
    key = raw.get("category_key")
    if key is not None and not (isinstance(key, str) and CATEGORY_KEY.match(key)):
        raise KnowledgeError(f"{name}: category_key {key!r} is not a CJ/T 214 key (C or E and 4 digits) or null")
    keywords = raw.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise KnowledgeError(f"{name}: keywords must be a list of non-empty strings")
    seen[entry_id] = n
    return Entry(entry_id, raw["question"].strip(), raw["answer"].strip(), key, tuple(k.strip() for k in keywords))


def load_knowledge(path: Path | None = None) -> KnowledgeBase:
    """The knowledge file (default: the shipped agent_ui/data/knowledge.json), checked entry by entry."""
    where = str(path) if path else "agent_ui/data/knowledge.json"
    try:
        text = (Path(path).read_text("utf-8") if path
                else resources.files("agent_ui").joinpath("data/knowledge.json").read_text("utf-8"))
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KnowledgeError(f"{where}: cannot read: {exc}") from exc
    if not isinstance(data, list):
        raise KnowledgeError(f"{where}: must be a JSON list of entries")
    seen: dict[str, int] = {}
    return KnowledgeBase([_entry(where, n, raw, seen) for n, raw in enumerate(data, start=1)])
