"""Measure a gazetteer on labelled addresses: accuracy, precision above the threshold,
coverage, a confusion table by district, throughput. Used by `hotline routing eval` and bench/.
"""
from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from routing.index import Gazetteer
from routing.locate import locate_in


class EvalFileError(ValueError):
    """The labelled file cannot be read; the message names the file and line."""


@dataclass
class Labelled:
    text: str
    district_code: str
    point: tuple[float, float] | None = None


@dataclass
class Report:
    total: int = 0
    placed: int = 0
    correct: int = 0
    confident: int = 0
    confident_correct: int = 0
    seconds: float = 0.0
    confusion: Counter = field(default_factory=Counter)   # (expected, got or "未定位") → n
    wrong_confident: list[tuple[str, str, str, float]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def precision_above(self) -> float:
        return self.confident_correct / self.confident if self.confident else 1.0

    @property
    def coverage(self) -> float:
        return self.confident / self.total if self.total else 0.0

    @property
    def per_second(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


def read_labelled(path: Path, gz: Gazetteer, column: str = "address") -> list[Labelled]:
    """Rows of a CSV with an address column and a district column (name such as 南山区, or code)."""
    by_name = {gz.name_of(c): c for c in gz.district_codes}
    by_name.update({name.removesuffix("区"): c for name, c in list(by_name.items())})
    try:
        reader = csv.DictReader(io.StringIO(Path(path).read_text("utf-8-sig")))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: cannot read ({exc})") from None
    district_col = next((c for c in ("district_code", "district") if c in (reader.fieldnames or [])), None)
    if column not in (reader.fieldnames or []) or district_col is None:
        raise EvalFileError(f"{path}:1: needs columns {column} and district (a name or a 6-digit code)")
    rows = []
    for row in reader:
        label = (row[district_col] or "").strip()
        code = label if label in gz.district_codes else by_name.get(label)
        if code is None:
            raise EvalFileError(f"{path}:{reader.line_num}: district {label!r} is not one of {gz.name}'s")
        point = None
        lon, lat = row.get("lon") or row.get("lng_gcj02"), row.get("lat") or row.get("lat_gcj02")
        if lon and lat:
            point = (float(lon), float(lat))
        rows.append(Labelled(row[column], code, point))
    return rows


def evaluate(gz: Gazetteer, rows: list[Labelled], threshold: float) -> Report:
    report = Report(total=len(rows))
    started = time.perf_counter()
    placements = [locate_in(gz, r.text) for r in rows]
    report.seconds = time.perf_counter() - started
    for row, p in zip(rows, placements):
        got = p.district_code or "未定位"
        report.confusion[(row.district_code, got)] += 1
        report.placed += p.placed
        report.correct += got == row.district_code
        if p.confident(threshold):
            report.confident += 1
            if got == row.district_code:
                report.confident_correct += 1
            else:
                report.wrong_confident.append((row.text, row.district_code, got, p.confidence))
    return report


def format_report(gz: Gazetteer, report: Report, threshold: float, title: str = "") -> str:
    lines = [title] if title else []
    lines += [
        f"addresses            {report.total}",
        f"accuracy             {report.accuracy:.2%}  ({report.correct} right, {report.total - report.placed} unplaced)",
        f"precision ≥ {threshold:<7}  {report.precision_above:.2%}  ({report.confident_correct} of {report.confident})",
        f"coverage ≥ {threshold:<8}  {report.coverage:.2%}",
        f"throughput           {report.per_second:,.0f} addresses/s",
    ]
    expected = sorted({e for e, _ in report.confusion})
    got = sorted({g for _, g in report.confusion}, key=lambda g: (g == "未定位", g))
    names = {c: gz.name_of(c) if c in gz.divisions else c for c in set(expected) | set(got)}
    lines.append("confusion (rows: expected, columns: placed)")
    lines.append(" " * 10 + "".join(f"{names[g]:>8}" for g in got))
    for e in expected:
        lines.append(f"{names[e]:<8}" + "".join(f"{report.confusion.get((e, g), 0):>9}" for g in got))
    for text, want, have, conf in report.wrong_confident[:10]:
        lines.append(f"  wrong above threshold: {text!r} expected {names[want]}, placed {names.get(have, have)} ({conf})")
    return "\n".join(lines)
