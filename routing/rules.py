"""From a place and a category to who handles the case and where the call is transferred.

Rules are data (rules.csv), first match wins:

    district,street,category,request_type,unit,transfer
    440307,440307009|440307010|440307011,*,*,dapeng,queue:district-dapeng
    440304,*,C02*,*,440304-water,ext:8302
    *,*,*,*,{district},queue:district-{district}

`*` matches anything, `a|b` any of the listed, a category pattern is a glob over the CJ/T 214
key (E01*, C0203). `{district}` and `{street}` in unit and transfer are filled from the place.
Without a rules file every case goes to its district's centre.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

COLUMNS = ("district", "street", "category", "request_type", "unit", "transfer")
_TEMPLATE = re.compile(r"\{(district|street)\}")
_FIELD = re.compile(r"^[0-9A-Za-z_*|?\-\[\]\u4e00-\u9fff]+$")


class RulesError(ValueError):
    """A rules file is wrong; the message names the file and line."""


@dataclass(frozen=True)
class Route:
    unit_code: str | None
    transfer_target: str | None
    rule: str                      # which rule decided, for the timeline


@dataclass(frozen=True)
class Rule:
    line: int
    district: str
    street: str
    category: str
    request_type: str
    unit: str
    transfer: str

    def matches(self, district: str, street: str | None, category: str | None, request_type: str | None) -> bool:
        return (_one_of(self.district, district) and _one_of(self.street, street or "")
                and any(fnmatchcase(category or "", p) for p in self.category.split("|"))
                and _one_of(self.request_type, request_type or ""))


def _one_of(pattern: str, value: str) -> bool:
    return pattern == "*" or value in pattern.split("|")


DEFAULT = Rule(0, "*", "*", "*", "*", "{district}", "queue:district-{district}")


class Rules:
    def __init__(self, rules: list[Rule], where: str = "built-in default") -> None:
        self.rules = rules + [DEFAULT]
        self.where = where

    def route(self, district_code: str | None, street_code: str | None = None, category_key: str | None = None,
              request_type: str | None = None) -> Route:
        """The first rule that matches; an unplaced case has no route (the dispatcher places it)."""
        if not district_code:
            return Route(None, None, "unplaced: no district")
        for rule in self.rules:
            if rule.matches(district_code, street_code, category_key, request_type):
                fill = {"district": district_code, "street": street_code or district_code}
                unit = _TEMPLATE.sub(lambda m: fill[m.group(1)], rule.unit)
                transfer = _TEMPLATE.sub(lambda m: fill[m.group(1)], rule.transfer) or None
                return Route(unit, transfer, f"{self.where}:{rule.line}" if rule.line else "default: district centre")
        raise AssertionError("the default rule matches every placed case")


def load_rules(path: Path | str | None) -> Rules:
    """Read and check a rules file; None or a missing default gives the built-in rule only."""
    if path is None:
        return Rules([])
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read ({exc})") from None
    # comments become blank lines (which csv skips) so reader.line_num is still the file's line
    lines = ["" if ln.lstrip().startswith("#") else ln for ln in text.splitlines()]
    skipped = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    reader = csv.DictReader(io.StringIO("\n".join(lines[skipped:])))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise RulesError(f"{path}:{skipped + 1}: columns must be {','.join(COLUMNS)}")
    rules = []
    for row in reader:
        n = reader.line_num + skipped
        if None in row:
            raise RulesError(f"{path}:{n}: more values than the {len(COLUMNS)} columns")
        values = {k: (row.get(k) or "").strip() for k in COLUMNS}
        if not re.match(r"^[0-9A-Za-z_\-{}]+$", values["unit"]):
            raise RulesError(f"{path}:{n}: unit {values['unit']!r}: a handling unit code, may use {{district}}")
        for key in COLUMNS[:4]:
            if not values[key] or not _FIELD.match(values[key]):
                raise RulesError(f"{path}:{n}: {key} {values[key]!r}: use *, a code, or codes joined by |")
        for key in ("unit", "transfer"):
            if re.search(r"\{(?!district\}|street\})", values[key]):
                raise RulesError(f"{path}:{n}: {key}: only {{district}} and {{street}} can be filled in")
        if values["transfer"] and not re.match(r"^(queue|ext):", values["transfer"]):
            raise RulesError(f"{path}:{n}: transfer {values['transfer']!r} must start with queue: or ext:")
        rules.append(Rule(n, **values))
    return Rules(rules, path.name)
