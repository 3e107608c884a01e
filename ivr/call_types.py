"""The small types the call flows and the services they ask share (kept apart so neither imports the other)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallNotes:
    """What a flow learned about the call; saved whatever happens."""
    intent: str | None = None
    queue: str | None = None
    district_code: str | None = None
    asked_case: str | None = None
    keys: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def ivr(self) -> dict[str, Any]:
        return {"keys": list(self.keys), **self.facts}


@dataclass(frozen=True)
class CaseBrief:
    number: str
    state: str

    @property
    def digits(self) -> str:
        """What a caller keys for this case: its number without the letter (E0102…→0102…)."""
        return re.sub(r"\D", "", self.number)
