"""Which gazetteer and rules a site has configured: the named one, else the index that
`hotline routing import` installed in the data folder, else Shenzhen as shipped.

Plain values in (the `gazetteer` and `routing_rules_file` settings, the data folder), so
routing stays free of the settings module; the compiled gazetteer is cached per file version.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from routing.divisions import packaged_city
from routing.index import Gazetteer

INSTALLED_INDEX = "gazetteer.pickle"   # written by `hotline routing import` into data_dir


def gazetteer_source(setting: str, data_dir: Path | str) -> str:
    """The gazetteer setting resolved to a shipped city, a folder or an index file."""
    if setting:
        return setting
    installed = Path(data_dir) / INSTALLED_INDEX
    return str(installed) if installed.is_file() else "shenzhen"


@lru_cache(maxsize=4)
def _compiled(where: str, stamp: float) -> Gazetteer:
    import routing  # the package's loader (this module is imported by the package itself)
    return routing.load_gazetteer(where)


def load_configured(where: str) -> Gazetteer:
    """The compiled gazetteer at `where`, loaded once per version of its file."""
    path = Path(where)
    return _compiled(where, path.stat().st_mtime if path.exists() else 0.0)


def configured_rules_file(where: str, setting: Path | None) -> Path | None:
    """The rules setting, else the rules.csv of the gazetteer's folder (None: the default rule)."""
    if setting:
        return setting
    source = Path(where)
    folder = source if source.is_dir() else packaged_city(str(source)) if not source.exists() else None
    return folder / "rules.csv" if folder and (folder / "rules.csv").is_file() else None
