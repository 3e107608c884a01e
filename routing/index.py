"""The compiled gazetteer: every name a caller may say, in Aho-Corasick automata (exact and by
sound), with what each name says about the place, plus the boundary polygons.

Compiling reads a `Source` once; `locate` then does no I/O. The learned layer (addresses of
confirmed cases) lives beside the compiled names and is re-indexed lazily after it changes.
"""
from __future__ import annotations

import csv
import io
import pickle
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import ahocorasick
import shapely
from shapely.geometry import shape

from routing.gazetteer import Source
from routing.text import Cleaner, core_names

FORMAT_VERSION = 3

# How often a name, when a caller says it, means the place it names (before combining evidence).
# Chosen from what each kind of name is, then checked on the development set (see bench/routing.py).
WEIGHTS = {
    "district": 0.995, "district_short": 0.97,
    "street": 0.99, "street_short": 0.95,
    "community": 0.97, "community_short": 0.9, "community_short2": 0.7,
    "old_name": 0.97, "area": 0.93, "landmark": 0.95, "road": 0.93, "short_name": 0.93,
    "road_numbered": 0.96, "road_span": 0.9,
}
SOUND_FACTOR = 0.92          # a name matched by its pinyin only (福天区 → 福田区)
SUFFIXES = {"district": ("区", "县"), "street": ("街道办事处", "街道", "镇", "乡"),
            "community": ("社区居民委员会", "社区居委会", "居民委员会", "村民委员会", "村委会", "居委会", "社区")}
DIRECTION_WORDS = ("东中心", "西中心", "中心区", "中心", "东", "西", "南", "北")
# how the names of estates and buildings end; a remembered name that ends otherwise is weak evidence
ESTATE_ENDINGS = tuple("苑园阁城居庭府村厦湾轩邸寓舍楼座坊里墅院峰台庄湖") + (
    "花园", "大厦", "广场", "公寓", "小区", "家园", "山庄", "中心", "大院", "新村", "名都", "华庭")
Progress = Callable[[Iterable[Any], int, str], Iterable[Any]]


def _no_progress(items: Iterable[Any], total: int, label: str) -> Iterable[Any]:
    return items


@dataclass(frozen=True, slots=True)
class Place:
    """What one name says: the codes it points to (with their share) and how far to trust it."""
    label: str
    kind: str
    shares: tuple[tuple[str, float], ...]
    weight: float
    point: tuple[float, float] | None = None


@dataclass
class NameStats:
    """Address points by the estate name they are known by: counts per code, and point sums."""
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    points: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, key: str, codes: Iterable[str], point: tuple[float, float] | None) -> None:
        codes = [c for c in codes if c]
        self.counts[key].update(codes)
        if point and codes:
            acc = self.points.setdefault((key, codes[0]), [0.0, 0.0, 0])
            acc[0] += point[0]
            acc[1] += point[1]
            acc[2] += 1

    def place(self, key: str, kind: str) -> Place:
        counts = self.counts[key]
        districts = {c: n for c, n in counts.items() if len(c) == 6}
        total = sum(districts.values())
        shares = [(c, n / total) for c, n in sorted(districts.items(), key=lambda kv: -kv[1])]
        for code, n in counts.items():  # lower levels, as the share of this name's mentions
            if len(code) > 6:
                shares.append((code, n / total))
        top = shares[0][0]
        acc = self.points.get((key, top))
        point = (round(acc[0] / acc[2], 6), round(acc[1] / acc[2], 6)) if acc else None
        # longer names are more distinctive; repeated agreeing evidence counts a little more
        weight = {3: 0.9, 4: 0.95}.get(len(key), 0.97)
        weight = min(0.99, weight + 0.01 * min(total - 1, 3))
        if not key.endswith(ESTATE_ENDINGS):   # 菜市场, 地铁站: a kind of place, found in every district
            weight = min(weight, 0.8)
        return Place(key, kind, tuple(shares), weight, point)


def _automaton(keys: dict[str, list[int]]) -> ahocorasick.Automaton:
    auto = ahocorasick.Automaton()
    for key, ids in keys.items():
        auto.add_word(key, (len(key), tuple(ids)))
    if keys:
        auto.make_automaton()
    return auto


def _sound_tables() -> tuple[dict[int, str], dict[int, str]]:
    """Traditional → simplified, and Han character → one private-use character per syllable."""
    import opencc
    from pypinyin import lazy_pinyin

    chars = [chr(i) for i in range(0x4E00, 0xA000)]
    simplified = opencc.OpenCC("t2s").convert("\n".join(chars)).split("\n")
    to_simplified = {ord(t): s for t, s in zip(chars, simplified) if t != s and len(s) == 1}
    syllables = lazy_pinyin(chars, errors=lambda x: ["?"] * len(x))
    codes: dict[str, str] = {}
    to_sound = {}
    for ch, syl in zip(chars, syllables):
        if syl == "?":
            continue
        # sounds southern speakers and speech-to-text often merge: zh/z, ch/c, sh/s, -ng/-n
        syl = syl.replace("zh", "z").replace("ch", "c").replace("sh", "s").replace("ng", "n")
        to_sound[ord(ch)] = codes.setdefault(syl, chr(0xE000 + len(codes)))
    return to_simplified, to_sound


def _other_places(own_city: str, own_province: str) -> list[str]:
    text = resources.files("routing").joinpath("data/china_places.csv").read_text("utf-8")
    return [row["name"] for row in csv.DictReader(io.StringIO(text))
            if row["name"] not in (own_city, own_province) and len(row["name"]) >= 3]


class Gazetteer:
    """A compiled gazetteer. Build with `compile_source`; save/load with `save`/`load_index`."""

    def __init__(self, src: Source, progress: Progress = _no_progress) -> None:
        self.name, self.code, self.province = src.name, src.code, src.province
        self.folder_name = src.folder.name
        self.divisions = {d.code: d for d in src.divisions}
        self.district_codes = [d.code for d in src.divisions if d.level == "district"]
        self.successors = {old: tuple(new) for old, new in src.successors.items()}
        to_simplified, self.to_sound = _sound_tables()
        self.cleaner = Cleaner(to_simplified)
        self.city_names = tuple({src.name, src.name.removesuffix("市")})
        self.places: list[Place] = []
        self.road_numbers: dict[str, list[tuple[str, tuple[int, int] | None]]] = {}
        keys: dict[str, list[int]] = defaultdict(list)
        for key, place in self._division_places(src):
            keys[key].append(self._add(place))
        for row in src.aliases:
            weight = WEIGHTS[row.kind]
            keys[self.cleaner.clean(row.alias)].append(self._add(Place(row.alias, row.kind, ((row.code, 1.0),), weight)))
        roads: dict[str, list] = defaultdict(list)
        for row in src.roads:
            roads[self.cleaner.clean(row.road)].append((row.district_code, row.numbers))
        for key, spans in roads.items():
            districts = sorted({d for d, _ in spans})
            pid = self._add(Place(key, "road_span", tuple((d, 1 / len(districts)) for d in districts),
                                  WEIGHTS["road_span"]))
            self.road_numbers[key] = spans
            keys[key].append(pid)
        # what an address may start with before its estate name: districts, 街道, areas, roads — not the
        # short names of 社区, which estates are often named after (大冲城市花园 is not "城市花园 in 大冲")
        self._names_automaton = _automaton({k: ids for k, ids in keys.items()
                                            if any(not self.places[i].kind.startswith("community_short") for i in ids)})
        stats = NameStats()
        for row in progress(src.addresses, len(src.addresses), "addresses"):
            for key in self.estate_names(row.address):
                stats.add(key, (row.district_code, row.street_code, row.community_code), row.point)
        for key in stats.counts:
            keys[key].append(self._add(stats.place(key, "address")))
        self.automaton = _automaton(keys)
        self.sound_automaton = _automaton(self._sound_keys(keys))
        self.other_automaton = _automaton({n: [] for n in _other_places(src.name, src.province)})
        self.shapes = {code: shape(geom) for code, geom in
                       progress(src.boundaries.items(), len(src.boundaries), "boundaries")}
        self._prepare()
        self.learned = NameStats()
        self._learned_places: list[Place] = []
        self._learned_automaton: ahocorasick.Automaton | None = None

    # ------------------------------------------------------------------ building
    def _add(self, place: Place) -> int:
        self.places.append(place)
        return len(self.places) - 1

    def _division_places(self, src: Source) -> Iterator[tuple[str, Place]]:
        """Each division by its listed name, its everyday full name (XX社区, XX村) and its short name."""
        city_short = src.name.removesuffix("市")
        for d in src.divisions:
            if d.level == "city":
                continue
            listed = self.cleaner.clean(d.name)
            base, full = listed, listed
            for suffix in SUFFIXES[d.level]:
                if listed.endswith(suffix) and len(listed) > len(suffix):
                    base = listed[: -len(suffix)]
                    full = base + ("村" if "村" in suffix else "社区" if d.level == "community" else suffix)
                    break
            label = self.display_name(d.code, d.name)
            for name in {listed, full}:
                yield name, Place(label, d.level, ((d.code, 1.0),), WEIGHTS[d.level])
            base = base.removeprefix(src.name).removeprefix(city_short) or base
            if base not in (listed, full) and len(base) >= 2:
                kind = f"{d.level}_short" + ("2" if d.level == "community" and len(base) == 2 else "")
                yield base, Place(label, kind, ((d.code, 1.0),), WEIGHTS[kind])

    @staticmethod
    def display_name(code: str, name: str) -> str:
        """社区居民委员会 → 社区, 村民委员会 → 村: the name as people say it."""
        for suffix, short in (("社区居民委员会", "社区"), ("社区居委会", "社区"), ("居民委员会", "社区"),
                              ("居委会", "社区"), ("村民委员会", "村"), ("村委会", "村")):
            if name.endswith(suffix):
                return name[: -len(suffix)] + short
        return name

    def _sound_keys(self, keys: dict[str, list[int]]) -> dict[str, list[int]]:
        """Names of three characters or more, also by sound (address names from four)."""
        out: dict[str, list[int]] = defaultdict(list)
        for key, ids in keys.items():
            if not all(ord(ch) in self.to_sound for ch in key):
                continue
            ids = [i for i in ids if len(key) >= (4 if self.places[i].kind in ("address", "road_span") else 3)
                   and not self.places[i].kind.endswith(("short", "short2"))]
            if ids:
                out[key.translate(self.to_sound)].extend(ids)
        return out

    def _prepare(self) -> None:
        for geom in self.shapes.values():
            shapely.prepare(geom)

    # ------------------------------------------------------------------ reading addresses
    def estate_names(self, address: str) -> list[str]:
        """The estate names an address is remembered by: the text after its city, division and
        area names (and a direction word such as 北 or 中心), up to the building part."""
        text = self.cleaner.clean(address)
        for city in self.city_names:
            text = text.removeprefix(city)
        pos = 0
        while True:  # past every name that starts at, or runs across, the current position
            end = pos
            for stop, (length, _ids) in self._names_automaton.iter(text, max(0, pos - 4), pos + 20):
                if stop - length + 1 <= pos <= stop:
                    end = max(end, stop + 1)
            if end == pos:
                break
            pos = end
            for word in DIRECTION_WORDS:
                if text.startswith(word, pos) and len(text) - pos - len(word) >= 3:
                    pos += len(word)
                    break
        return core_names(text[pos:])

    # ------------------------------------------------------------------ learning
    def learn(self, address: str, district_code: str, street_code: str | None = None,
              community_code: str | None = None, point: tuple[float, float] | None = None) -> list[str]:
        """Remember a confirmed placement; returns the names it was remembered under."""
        if district_code not in self.district_codes:
            raise ValueError(f"{district_code} is not a district of {self.name}")
        names = self.estate_names(address)
        for key in names:
            self.learned.add(key, (district_code, street_code, community_code), point)
        if names:
            self._learned_automaton = None
        return names

    def with_fresh_learning(self) -> "Gazetteer":
        """A copy sharing the compiled names but with its own (empty) learned layer."""
        twin = Gazetteer.__new__(Gazetteer)
        twin.__dict__.update(self.__dict__)
        twin.learned, twin._learned_places, twin._learned_automaton = NameStats(), [], None
        return twin

    def learned_index(self) -> tuple[ahocorasick.Automaton, list[Place]]:
        if self._learned_automaton is None:
            self._learned_places = [self.learned.place(k, "learned") for k in self.learned.counts]
            self._learned_automaton = _automaton({k: [i] for i, k in enumerate(self.learned.counts)})
        return self._learned_automaton, self._learned_places

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        state = dict(self.__dict__, _learned_automaton=None, shapes={c: shapely.to_wkb(g) for c, g in self.shapes.items()})
        Path(path).write_bytes(pickle.dumps((FORMAT_VERSION, state), protocol=pickle.HIGHEST_PROTOCOL))

    def district_of(self, code: str) -> str:
        """The district a 街道, 社区 or grid code lies in (statistics codes nest by prefix)."""
        return code[:6]

    def name_of(self, code: str) -> str:
        division = self.divisions.get(code)
        return self.display_name(code, division.name) if division else code


def load_index(path: Path) -> Gazetteer:
    """A compiled index written by `Gazetteer.save` (only ever our own file in the data folder)."""
    from routing.gazetteer import GazetteerError
    data = Path(path).read_bytes()
    if not data.startswith(b"\x80"):
        raise GazetteerError(f"{path}: not a compiled gazetteer index (run `hotline routing import`)")
    try:
        version, state = pickle.loads(data)
    except Exception as exc:  # a damaged or foreign file: say so, never a raw traceback
        raise GazetteerError(f"{path}: not a compiled gazetteer index ({exc.__class__.__name__})") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: index format {version}, expected {FORMAT_VERSION}: run `hotline routing import` again")
    gz = Gazetteer.__new__(Gazetteer)
    gz.__dict__.update(state)
    gz.shapes = {c: shapely.from_wkb(b) for c, b in state["shapes"].items()}
    gz._prepare()
    return gz
