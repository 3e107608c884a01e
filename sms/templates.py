"""SMS texts as data: Jinja2 text templates, one file per kind, in `sms/templates/`.

`load_templates()` reads the packaged folder, or the folder the `sms_templates_dir` setting
names (which replaces it as a whole), and checks it at once: every kind present, each file
parses, renders with sample values under StrictUndefined, starts with the operator signature
(【…】, exactly once) and fits its part limit; any fault is a TemplateError naming the file.

Files: `<kind>.txt` for each of KINDS; files starting with "_" are shared pieces (`_base.txt`
holds the signature, every kind extends it). Autoescape is off (SMS text, not HTML); inserted
values are cleaned of control characters and their whitespace collapsed. A filter
`clip(units)` cuts a value to that many UTF-16 code units, ending in "…".
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from sms.segment import PART_UNITS, SINGLE_UNITS, count_parts, encode_ucs2

PACKAGED_DIR = Path(__file__).with_name("templates")
SHANGHAI = ZoneInfo("Asia/Shanghai")

# kind → the values its template is given (the sample render checks it uses nothing else)
KIND_VALUES: dict[str, tuple[str, ...]] = {
    "receipt": ("number",),
    "dispatched": ("number", "unit", "deadline"),
    "result": ("number", "result"),
    "survey": ("number",),
    "urge": ("number", "unit", "deadline"),
    "progress": ("number", "state", "unit"),
    "not_found": ("asked",),
    "opt_out": (),
    "report_ack": ("reference",),
    "reply": ("text",),
}
KINDS = tuple(KIND_VALUES)
SINGLE_PART_KINDS = frozenset({"receipt", "progress", "survey", "not_found", "opt_out"})
MAX_PARTS = {kind: 1 if kind in SINGLE_PART_KINDS else 3 for kind in KINDS}

# realistic values: the checks at load time render every kind with these
SAMPLE_VALUES: dict[str, str] = {
    "number": "E0102202611230001",
    "state": "处置中",
    "unit": "大鹏新区城市管理指挥中心",
    "deadline": "11月25日 18:00",
    "result": "已安排环卫人员清运，现场已清理干净，并加强日常巡查。",
    "asked": "E0102202611230001",
    "reference": "DX202611230001",
    "text": "您好，您反映的占道经营问题已转交所在街道城管执法队处理，感谢您的监督。",
}

SIGNATURE = re.compile(r"【[^【】\s]{1,20}】")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")  # zero-width, bidi controls
_SPACE = re.compile(r"\s+")
_BRACKETS = str.maketrans("【】", "[]")  # a value never looks like a second signature


class TemplateError(ValueError):
    """A template folder or file is wrong, or a text breaks its kind's limit; the message says which."""

    def __init__(self, message: str, *, kind: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path


@dataclass(frozen=True)
class Rendered:
    text: str
    parts: int      # SMS parts it takes (sms.segment.count_parts)

    @property
    def units(self) -> int:
        """UTF-16 code units of the text."""
        return len(encode_ucs2(self.text)) // 2


def clean_value(value: object) -> str:
    """A value as it may appear in a text: None → "", control and invisible characters removed,
    runs of whitespace (newlines, tabs, U+3000 …) made one space, ends trimmed, and 【】 made []
    so that the signature stays the only 【…】 of a text."""
    if value is None:
        return ""
    text = _SPACE.sub(" ", str(value))
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    return text.translate(_BRACKETS).strip()


def clip(value: object, units: int, end: str = "…") -> str:
    """Cut to at most `units` UTF-16 code units (with `end`), never inside a surrogate pair."""
    text = str(value)
    if len(encode_ucs2(text)) // 2 <= units:
        return text
    room = units - len(encode_ucs2(end)) // 2
    out, used = [], 0
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if used + size > room:
            break
        out.append(ch)
        used += size
    return "".join(out) + end


def _limit_units(parts: int) -> int:
    return SINGLE_UNITS if parts == 1 else parts * PART_UNITS


class Templates:
    """The loaded, checked SMS templates of one folder."""

    def __init__(self, folder: Path, env: jinja2.Environment) -> None:
        self.folder = folder
        self._env = env
        self._templates = {kind: env.get_template(f"{kind}.txt") for kind in KINDS}

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS

    def max_parts(self, kind: str) -> int:
        self._known(kind)
        return MAX_PARTS[kind]

    def render(self, kind: str, **values: Any) -> Rendered:
        """The text of a kind with these values; TemplateError for an unknown kind, a missing
        value, or a text over the kind's part limit (naming the kind, the length and the limit)."""
        self._known(kind)
        text = self._render(kind, values)
        units = len(encode_ucs2(text)) // 2
        parts, limit = count_parts(text), MAX_PARTS[kind]
        if parts > limit:
            raise TemplateError(
                f"SMS template {kind!r}: the text is {units} UCS-2 code units = {parts} parts, over the "
                f"limit for {kind!r} of {limit} part{'s' if limit > 1 else ''} ({_limit_units(limit)} code units)",
                kind=kind, path=self.folder / f"{kind}.txt")
        return Rendered(text, parts)

    def _known(self, kind: str) -> None:
        if kind not in KIND_VALUES:
            raise TemplateError(f"unknown SMS template kind {kind!r}; kinds: {', '.join(KINDS)}", kind=kind)

    def _render(self, kind: str, values: Mapping[str, Any]) -> str:
        clean = {name: clean_value(value) for name, value in values.items()}
        try:
            return self._templates[kind].render(clean).strip()
        except jinja2.UndefinedError as exc:
            given = ", ".join(sorted(clean)) or "none"
            raise TemplateError(f"SMS template {kind!r} ({self.folder / f'{kind}.txt'}): {exc}; "
                                f"values given: {given}", kind=kind, path=self.folder / f"{kind}.txt") from None


def _environment(sources: dict[str, str]) -> jinja2.Environment:
    env = SandboxedEnvironment(loader=jinja2.DictLoader(sources), undefined=jinja2.StrictUndefined,
                               autoescape=False, trim_blocks=True, lstrip_blocks=True,
                               keep_trailing_newline=False, auto_reload=False)
    env.filters["clip"] = clip
    return env


def _read(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        raise TemplateError(f"SMS templates folder {folder} does not exist or is not a folder", path=folder)
    sources = {}
    for path in sorted(folder.glob("*.txt")):
        try:
            sources[path.name] = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TemplateError(f"SMS template {path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                path=path) from None
        except OSError as exc:
            raise TemplateError(f"SMS template {path}: cannot be read ({exc.strerror})", path=path) from None
    return sources


def load_templates(folder: Path | None = None) -> Templates:
    """Load and check the templates of `folder`; default: the `sms_templates_dir` setting, else
    the packaged `sms/templates`. Raises TemplateError naming the file at fault."""
    if folder is None:
        from hotline.settings import get_settings

        folder = get_settings().sms_templates_dir or PACKAGED_DIR
    folder = Path(folder)
    sources = _read(folder)
    missing = [f"{kind}.txt" for kind in KINDS if f"{kind}.txt" not in sources]
    if missing:
        raise TemplateError(f"SMS templates folder {folder} lacks {', '.join(missing)} "
                            f"(every kind needs its file: {', '.join(k + '.txt' for k in KINDS)})",
                            path=folder / missing[0])
    unknown = [name for name in sources if not name.startswith("_") and name[:-4] not in KIND_VALUES]
    if unknown:
        raise TemplateError(f"SMS templates folder {folder}: {', '.join(unknown)} is no known kind "
                            f"(kinds: {', '.join(KINDS)}; shared pieces start with '_')",
                            path=folder / unknown[0])
    env = _environment(sources)
    for name in sources:  # shared pieces too, so a fault in _base.txt names _base.txt
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.name or name
            raise TemplateError(f"SMS template {folder / where}: line {exc.lineno}: {exc.message}",
                                path=folder / where) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"SMS template {folder / name} uses {exc.name}, which is not in {folder}",
                                path=folder / name) from None
    templates = Templates(folder, env)
    for kind in KINDS:
        path = folder / f"{kind}.txt"
        sample = {name: SAMPLE_VALUES[name] for name in KIND_VALUES[kind]}
        try:
            text = templates._templates[kind].render(sample).strip()
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"SMS template {path}: {exc}; the values of {kind!r} are: "
                                f"{', '.join(KIND_VALUES[kind]) or 'none'}", kind=kind, path=path) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"SMS template {path} uses {exc.name}, which is not in {folder}",
                                kind=kind, path=path) from None
        except Exception as exc:  # noqa: BLE001 — a filter misused, a sandbox refusal …: name the file whatever it is
            raise TemplateError(f"SMS template {path}: rendering with sample values failed: "
                                f"{type(exc).__name__}: {exc}", kind=kind, path=path) from None
        signatures = SIGNATURE.findall(text)
        if not SIGNATURE.match(text) or len(signatures) != 1:
            raise TemplateError(f"SMS template {path}: the text must start with the signature 【…】 and carry it "
                                f"once; it renders as {text[:40]!r}… with {len(signatures)} signature(s)",
                                kind=kind, path=path)
        units, parts = len(encode_ucs2(text)) // 2, count_parts(text)
        if parts > MAX_PARTS[kind]:
            raise TemplateError(f"SMS template {path}: with sample values the text is {units} UCS-2 code units "
                                f"= {parts} parts; {kind!r} may take {MAX_PARTS[kind]} "
                                f"({_limit_units(MAX_PARTS[kind])} code units)", kind=kind, path=path)
    return templates


def format_deadline(when: datetime | None, zone: ZoneInfo = SHANGHAI) -> str:
    """"11月25日 18:00" in local time; a naive datetime is taken as UTC; None → ""."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    local = when.astimezone(zone)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def case_values(case: Any, state_labels: Mapping[str, str], unit_name: str | None, *,
                result: str | None = None, zone: ZoneInfo = SHANGHAI) -> dict[str, str]:
    """The values of a case for any kind: number, state (its label), unit, deadline (due_at in
    local time, "" without a clock) and result (the unit's result note, "" if none)."""
    state = getattr(case, "state", None) or ""
    return {
        "number": case.number,
        "state": state_labels.get(state, state),
        "unit": unit_name or "",
        "deadline": format_deadline(getattr(case, "due_at", None), zone),
        "result": result or "",
    }


def reply_parts(templates: "Templates", text: str) -> tuple[int, int, int]:
    """An agent's reply as it would go out: (parts, UCS-2 code units, the most parts allowed).
    More parts than allowed means the text is too long to send."""
    rendered = templates._render("reply", {"text": text})
    return count_parts(rendered), len(encode_ucs2(rendered)) // 2, MAX_PARTS["reply"]
