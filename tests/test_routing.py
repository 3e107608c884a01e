"""`routing` on its own: placing address text and points, learning, gazetteer import, rules,
evaluation, and the `hotline geocode` / `hotline routing …` commands."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import prcoords
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import routing
from routing.evaluate import EvalFileError, evaluate, format_report, read_labelled
from routing.text import Cleaner, chinese_numeral, core_names, split_house_part

ROOT = Path(__file__).resolve().parent.parent
DEV_FILE = ROOT / "tests/data/dev_addresses_2016.csv"
SHENZHEN_DISTRICTS = {"440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311"}
DAPENG_STREETS = ("440307009", "440307010", "440307011")


@pytest.fixture(scope="module")
def sz() -> routing.Gazetteer:
    """The default (Shenzhen) gazetteer, compiled once for the whole process."""
    return routing.default_gazetteer()


@pytest.fixture(scope="module")
def zh() -> routing.Gazetteer:
    return routing.load_gazetteer("zhuhai")


@pytest.fixture(scope="module")
def sz_rules() -> routing.Rules:
    return routing.load_rules(routing.packaged_city("shenzhen") / "rules.csv")


def place(text, gz):
    return routing.locate(text, gazetteer=gz)


def assert_unplaced(p: routing.Placement, reason_words: str = "") -> None:
    assert p.district_code is None and not p.placed
    assert p.street_code is None and p.community_code is None and p.grid_code is None
    assert p.confidence == 0.0 and p.alternatives == []
    assert p.reason.strip(), "an unplaced placement must say why"
    assert reason_words in p.reason
    assert not p.confident(0.0)


def assert_well_formed(p: routing.Placement, gz: routing.Gazetteer) -> None:
    assert 0.0 <= p.confidence <= 1.0
    assert p.district_code is None or p.district_code in gz.district_codes
    assert len(p.alternatives) <= 3
    assert all(a.district_code in gz.district_codes and a.district_code != p.district_code for a in p.alternatives)
    assert all(0.0 <= a.confidence <= p.confidence for a in p.alternatives)
    if p.district_code is None:
        assert p.reason.strip()
    else:
        for code in (p.street_code, p.community_code, p.grid_code):
            assert code is None or code.startswith(p.district_code)
    json.dumps(p.as_dict(), ensure_ascii=False)  # what the CLI and the timeline keep must serialise


def evidence_names(p: routing.Placement) -> list[str]:
    return [e["name"] for e in p.evidence]


# ---------------------------------------------------------------------------------------- names


def test_the_default_gazetteer_is_shenzhen(sz):
    assert sz.name == "深圳市" and sz.code == "440300"
    assert set(sz.district_codes) == SHENZHEN_DISTRICTS
    assert {sz.name_of(c) for c in DAPENG_STREETS} == {"葵涌街道", "大鹏街道", "南澳街道"}


def test_full_district_and_street_names(sz):
    p = place("龙岗区布吉街道", sz)
    assert (p.district_code, p.street_code) == ("440307", "440307014")
    assert p.confidence >= 0.9 and p.confident(0.9) and p.placed
    assert {"龙岗区", "布吉街道"} <= set(evidence_names(p))
    assert {e["text"] for e in p.evidence} >= {"龙岗区", "布吉街道"}
    assert all(e["how"] == "name" for e in p.evidence)
    assert p.names == {"440307": "龙岗区", "440307014": "布吉街道"}
    assert p.alternatives == [] and p.reason == ""
    for e in p.evidence:
        assert set(e) == {"text", "name", "kind", "how", "codes", "weight"}
        assert 0 < e["weight"] <= 1


@pytest.mark.parametrize("text, district, street", [
    ("深圳市福田区", "440304", None),
    ("福田区", "440304", None),
    ("福田", "440304", ...),            # ...: the street is not checked
    ("西乡", "440306", "440306018"),
    ("宝安区西乡街道", "440306", "440306018"),
    ("深圳市南山区粤海街道", "440305", "440305007"),
])
def test_short_names_and_the_city_prefix_is_optional(sz, text, district, street):
    p = place(text, sz)
    assert p.district_code == district and p.confident(0.9)
    if street is not ...:
        assert p.street_code == street


def test_city_prefix_adds_nothing_and_takes_nothing(sz):
    with_city, without = place("深圳市福田区", sz), place("福田区", sz)
    assert with_city.district_code == without.district_code == "440304"
    assert with_city.confidence == pytest.approx(without.confidence)


@pytest.mark.parametrize("variant", [
    "福田區華強北",             # traditional characters
    "福田区　华强北",           # an ideographic space
    "福田区华强北",
    "【福田区】华强北！！",       # full-width punctuation
])
def test_traditional_full_width_and_punctuation_are_the_same_place(sz, variant):
    p = place(variant, sz)
    assert (p.district_code, p.street_code) == ("440304", "440304011")  # 华强北街道
    assert p.confidence >= 0.99


def test_full_width_digits_and_latin_letters_are_folded(sz):
    assert place("深南大道６００８号", sz).district_code == "440304"
    assert place("深南大道６００８号", sz).evidence[0]["how"] == "house number 6008"
    p = place("ＦＵ", sz)   # full-width Latin but no Chinese name: nothing to place, and it says so
    assert_unplaced(p, "no Chinese place name")


@pytest.mark.parametrize("numeral, digits", [("六千零八", "6008"), ("一千零八", "1008"), ("九千九百九十九", "9999"),
                                             ("九九九九", "9999")])
def test_chinese_numerals_in_house_numbers(sz, numeral, digits):
    spoken, typed = place(f"深南大道{numeral}号", sz), place(f"深南大道{digits}号", sz)
    assert spoken.district_code == typed.district_code
    assert spoken.confidence == typed.confidence
    assert spoken.evidence[0]["how"] == f"house number {int(digits)}"


def test_shennan_road_by_house_number(sz):
    futian, nanshan = place("深南大道6008号", sz), place("深南大道9999号", sz)
    assert futian.district_code == "440304" and futian.confident(0.9)
    assert nanshan.district_code == "440305" and nanshan.confident(0.9)
    assert nanshan.evidence[0]["codes"] == ["440305"]


def test_noise_words_do_not_change_the_place(sz):
    plain = place("南山区科技园", sz)
    assert plain.district_code == "440305" and plain.confident(0.9)
    for noisy in ("南山区科技园附近", "南山区科技园旁边", "南山区科技园对面", "南山区科技园附近的"):
        p = place(noisy, sz)
        assert (p.district_code, p.street_code, p.community_code) == \
               (plain.district_code, plain.street_code, plain.community_code), noisy
        assert p.confidence == plain.confidence
        assert not any("附近" in e["text"] or "对面" in e["text"] for e in p.evidence)


def test_an_intersection_names_both_roads(sz):
    p = place("福田区深南大道与彩田路交汇处", sz)
    assert p.district_code == "440304" and p.confidence >= 0.99
    assert {"福田区", "深南大道", "彩田路"} <= set(evidence_names(p))
    without_district = place("深南大道与彩田路交叉口", sz)
    assert without_district.district_code == "440304"   # 彩田路 is only in 福田: it decides the road
    assert without_district.confidence > place("深南大道", sz).confidence


def test_a_full_address_fills_street_community_grid_and_point(sz):
    p = place("南山区科技园科苑路15号", sz)
    assert p.district_code == "440305" and p.confidence >= 0.99
    assert p.street_code == "440305007" and p.community_code.startswith("440305007")
    assert p.grid_code == p.community_code + "00" and len(p.grid_code) == 14
    lon, lat = p.point
    assert 113.75 < lon < 114.65 and 22.39 < lat < 22.87   # inside Shenzhen's bounding box (GCJ-02)
    assert routing.locate_point(lon, lat, gazetteer=sz).district_code == "440305"
    assert p.names["440305007"] == "粤海街道"


def test_homophone_typo_is_found_by_sound_but_trusted_less(sz):
    typo, exact = place("福天区", sz), place("福田区", sz)
    assert typo.district_code == exact.district_code == "440304"
    assert [e["how"] for e in typo.evidence] == ["sound"]
    assert typo.evidence[0]["name"] == "福田区" and typo.evidence[0]["text"] == "福天区"
    assert typo.confidence < exact.confidence
    assert typo.evidence[0]["weight"] < exact.evidence[0]["weight"]


def test_sound_does_not_override_an_exact_name(sz):
    p = place("南山区", sz)
    assert [e["how"] for e in p.evidence] == ["name"]


@pytest.mark.parametrize("text, district, street", [
    ("宝安区龙华街道", "440309", "440309003"),     # 龙华 was cut out of 宝安 in 2016
    ("宝安区观澜", "440309", "440309006"),
    ("龙岗区坪山街道", "440310", "440310001"),     # 坪山 out of 龙岗
])
def test_old_district_with_a_street_of_the_newer_one(sz, text, district, street):
    p = place(text, sz)
    assert (p.district_code, p.street_code) == (district, street)
    assert p.confident(0.9)
    old = next(e for e in p.evidence if e["kind"] == "district")
    assert old["codes"] != [district]   # the old name really named another district


@pytest.mark.parametrize("text, district", [("龙华新区", "440309"), ("坪山新区", "440310"), ("光明新区", "440311")])
def test_old_new_area_names(sz, text, district):
    p = place(text, sz)
    assert p.district_code == district and p.confident(0.9)
    assert p.evidence[0]["kind"] == "old_name"


def test_old_district_alone_stays_the_old_district(sz):
    assert place("宝安区", sz).district_code == "440306"


def test_cross_district_road_alone_is_ambiguous(sz):
    p = place("深南大道", sz)
    assert p.placed and p.confidence < 0.9 and not p.confident(0.9)
    candidates = {p.district_code} | {a.district_code for a in p.alternatives}
    assert {"440304", "440305"} <= candidates
    other = next(a for a in p.alternatives if a.district_code in {"440304", "440305"} - {p.district_code})
    assert other.name in ("福田区", "南山区") and other.confidence > 0.3
    assert_well_formed(p, sz)


def test_a_district_name_resolves_the_road(sz):
    assert place("南山区深南大道", sz).district_code == "440305"
    assert place("福田区深南大道", sz).district_code == "440304"
    assert place("南山区深南大道", sz).confident(0.9)


def test_a_building_named_after_a_street_counts_less(sz):
    """5栋宝龙阁: a name after the house part is the building's name, not the 街道."""
    p = place("南山区某小区5栋西乡阁", sz)
    assert p.district_code == "440305"
    xixiang = [e for e in p.evidence if e["name"] == "西乡街道"]
    assert xixiang and xixiang[0]["how"] == "after the house part" and xixiang[0]["weight"] <= 0.5


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad, words", [
    ("", "empty"),
    ("   ", "empty"),
    ("\t\n\r ", "empty"),
    ("福" * 10_000, "no name of a place"),
    ("x" * 10_000, "no Chinese place name"),
    ("😀🚧🗑️", "no Chinese place name"),
    ("\x00\x01\x02\x1b[31m\x7f", "no Chinese place name"),
    ("\ud800\udfff", "no Chinese place name"),  # lone surrogates
    ("13800138000", "phone number"),
    ("+86 138-0013-8000", "phone number"),
    ("广州市天河区体育西路", "广州市"),
    ("北京市朝阳区", "北京市"),
    ("不知道在哪里", "no name of a place in 深圳市"),
    (None, "no address text"),
    (12345, "no address text"),
    (b"\xe7\xa6\x8f\xe7\x94\xb0\xe5\x8c\xba", "no address text"),
    (["福田区"], "no address text"),
])
def test_bad_input_is_unplaced_with_a_reason(sz, bad, words):
    assert_unplaced(place(bad, sz), words)


def test_a_long_text_is_cut_but_still_placed(sz):
    p = place("福田区华强北" + "的的" * 5_000, sz)
    assert p.district_code == "440304"
    far = place("的" * 5_000 + "福田区", sz)  # the place name is beyond what an address can be
    assert_unplaced(far)


def test_control_characters_inside_an_address_are_blanks(sz):
    p = place("福田区\x00华强北\x07", sz)
    assert (p.district_code, p.street_code) == ("440304", "440304011")


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_any_text_gives_a_well_formed_placement(sz, text):
    assert_well_formed(place(text, sz), sz)


_ADDRESSY = st.text(alphabet=st.sampled_from(list("福田南山区宝安龙岗华街道深南大道号栋0123456789一二三千百零十路与附近"
                                                   "（）() 市圳广州天河新村苑园华强北西乡布吉")), max_size=30)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_ADDRESSY)
def test_address_like_text_gives_a_well_formed_placement(sz, text):
    """Random text built from place-name characters reaches the scoring code, not only the early exits."""
    assert_well_formed(place(text, sz), sz)


# ---------------------------------------------------------------------------------------- points


def test_point_inside_futian(sz):
    p = routing.locate_point(114.0579, 22.5431, gazetteer=sz)
    assert p.district_code == "440304" and p.confidence >= 0.9
    assert p.point == (114.0579, 22.5431)
    assert p.evidence[0]["kind"] == "point" and p.evidence[0]["how"] == "polygon"
    assert p.names["440304"] == "福田区"


def test_the_same_place_in_every_datum(sz):
    gcj = (22.5431, 114.0579)                       # prcoords takes (lat, lon)
    wgs_lat, wgs_lon = prcoords.gcj_wgs(gcj)
    bd_lat, bd_lon = prcoords.gcj_bd(gcj)
    assert (wgs_lon, wgs_lat) != (114.0579, 22.5431)
    for lon, lat, datum in ((wgs_lon, wgs_lat, "wgs84"), (bd_lon, bd_lat, "bd09"), (114.0579, 22.5431, "gcj02"),
                            (bd_lon, bd_lat, "BD-09")):
        p = routing.locate_point(lon, lat, datum, gazetteer=sz)
        assert p.district_code == "440304" and p.confidence >= 0.9, datum
        # the placement's point is in GCJ-02 whatever the caller's datum
        assert p.point[0] == pytest.approx(114.0579, abs=1e-4) and p.point[1] == pytest.approx(22.5431, abs=1e-4)


def test_a_point_on_a_district_boundary_is_less_sure_and_names_the_neighbour(sz):
    border = sz.shapes["440304"].boundary.intersection(sz.shapes["440305"].boundary)
    c = border.interpolate(0.5, normalized=True)
    p = routing.locate_point(c.x, c.y, gazetteer=sz)
    assert p.district_code in ("440304", "440305")
    assert p.confidence < 0.9 and "boundary" in p.reason
    assert {a.district_code for a in p.alternatives} == {"440304", "440305"} - {p.district_code}


@pytest.mark.parametrize("lon, lat, datum, words", [
    (116.4, 39.9, "gcj02", "outside 深圳市"),          # Beijing
    (113.55, 22.25, "gcj02", "outside 深圳市"),        # Zhuhai
    (float("nan"), 22.5, "gcj02", "not a longitude and latitude"),
    (114.0, float("inf"), "gcj02", "not a longitude and latitude"),
    (22.5431, 114.0579, "gcj02", "not a longitude and latitude"),   # lat and lon swapped
    ("x", 22.5, "gcj02", "not a pair of numbers"),
    (None, None, "gcj02", "not a pair of numbers"),
    (114.0579, 22.5431, "mercator", "unknown datum"),
])
def test_points_that_cannot_be_placed(sz, lon, lat, datum, words):
    assert_unplaced(routing.locate_point(lon, lat, datum, gazetteer=sz), words)


def test_point_in_the_second_city(zh):
    assert routing.locate_point(113.55, 22.25, gazetteer=zh).district_code == "440402"
    assert_unplaced(routing.locate_point(114.0579, 22.5431, gazetteer=zh), "outside 珠海市")


# ---------------------------------------------------------------------------------------- learning


def test_learning_an_estate_on_a_copy(sz):
    before_default = place("某某新奇苑3栋", sz)
    assert not before_default.confident(0.9)
    twin = sz.with_fresh_learning()
    assert not place("某某新奇苑3栋", twin).confident(0.5)
    assert twin.learn("南山区某某新奇苑1栋", "440305") == ["某某新奇苑"]
    p = place("某某新奇苑3栋", twin)
    assert p.district_code == "440305" and p.confident(0.9)
    assert [(e["name"], e["kind"]) for e in p.evidence] == [("某某新奇苑", "learned")]
    # the default gazetteer (and any other copy) did not learn it
    assert place("某某新奇苑3栋", sz) == before_default
    assert routing.locate("某某新奇苑3栋").district_code is None
    assert place("某某新奇苑3栋", sz.with_fresh_learning()).district_code is None


def test_learning_keeps_what_the_copies_share(sz):
    twin = sz.with_fresh_learning()
    twin.learn("福田区某某新奇苑1栋", "440304")
    assert twin.places is sz.places and twin.automaton is sz.automaton   # compiled names are shared, not copied
    assert place("福田区", twin) == place("福田区", sz)


def test_learned_names_are_evidence_not_a_veto(sz):
    twin = sz.with_fresh_learning()
    twin.learn("福田区某某新奇苑1栋", "440304")
    p = place("南山区某某新奇苑3栋", twin)   # the caller's district outweighs one learned address
    assert p.district_code == "440305"
    assert "440304" in {a.district_code for a in p.alternatives}
    assert p.confidence < place("南山区", twin).confidence


def test_conflicting_confirmations_make_a_learned_name_ambiguous(sz):
    twin = sz.with_fresh_learning()
    twin.learn("某某新奇苑1栋", "440305")
    twin.learn("某某新奇苑2栋", "440304")
    p = place("某某新奇苑3栋", twin)
    assert not p.confident(0.9)
    assert {p.district_code} | {a.district_code for a in p.alternatives} >= {"440304", "440305"}


def test_learning_refuses_a_district_of_another_city(sz):
    twin = sz.with_fresh_learning()
    with pytest.raises(ValueError, match="110101"):
        twin.learn("某某新奇苑1栋", "110101")


def test_learning_an_address_that_is_only_names_remembers_nothing(sz):
    twin = sz.with_fresh_learning()
    assert twin.learn("南山区粤海街道", "440305") == []
    assert twin.learn("福田区华强北路1002号", "440304") == []


def test_learning_refuses_a_street_code_as_the_district(sz):
    twin = sz.with_fresh_learning()
    with pytest.raises(ValueError, match="not a district"):
        twin.learn("南山区某某新奇苑1栋", "440305007")
    assert place("福田区", twin).district_code == "440304"   # locate never raises


def test_a_generic_word_learned_once_does_not_auto_dispatch(sz):
    twin = sz.with_fresh_learning()
    twin.learn("福田区菜市场门口", "440304")
    assert not place("菜市场", twin).confident(0.9)


# ---------------------------------------------------------------------------------------- the second city


def test_second_city_places_its_own_names(zh):
    assert zh.name == "珠海市" and set(zh.district_codes) == {"440402", "440403", "440404"}
    p = place("香洲区拱北街道", zh)
    assert (p.district_code, p.street_code) == ("440402", "440402005") and p.confidence >= 0.99
    assert place("斗门区井岸镇", zh).street_code == "440403107"
    assert place("珠海市金湾区", zh).district_code == "440404"


def test_each_city_does_not_know_the_others_names(sz, zh):
    assert_unplaced(place("深圳市福田区", zh), "深圳市")
    assert_unplaced(place("福田区", zh))
    assert_unplaced(place("珠海市香洲区", sz), "珠海市")


def test_import_writes_an_index_that_reads_back(tmp_path, zh):
    dest = tmp_path / "out" / "zh.pickle"
    compiled = routing.import_gazetteer(routing.packaged_city("zhuhai"), dest)
    assert dest.is_file() and not dest.with_suffix(".tmp").exists()
    loaded = routing.load_gazetteer(dest)
    assert loaded.name == "珠海市" and loaded.district_codes == compiled.district_codes
    for text in ("香洲区拱北街道", "拱北", "斗门区井岸镇", "深圳市福田区"):
        assert place(text, loaded) == place(text, compiled) == place(text, zh)
    assert routing.locate_point(113.55, 22.25, gazetteer=loaded) == routing.locate_point(113.55, 22.25, gazetteer=zh)


def test_load_gazetteer_accepts_a_folder(tmp_path):
    folder = shutil.copytree(routing.packaged_city("zhuhai"), tmp_path / "zh")
    assert place("香洲区拱北街道", routing.load_gazetteer(folder)).district_code == "440402"


def test_load_gazetteer_of_nothing_says_so(tmp_path):
    with pytest.raises(routing.GazetteerError, match="atlantis"):
        routing.load_gazetteer("atlantis")
    with pytest.raises(routing.GazetteerError, match="not a folder"):
        routing.compile_gazetteer(tmp_path / "missing")


def test_an_index_of_another_format_version_is_refused(tmp_path):
    import pickle
    stale = tmp_path / "old.pickle"
    stale.write_bytes(pickle.dumps((1, {})))
    with pytest.raises(ValueError, match="routing import"):
        routing.load_gazetteer(stale)


def _copy_zhuhai(tmp_path: Path) -> Path:
    return Path(shutil.copytree(routing.packaged_city("zhuhai"), tmp_path / "zhuhai"))


def _break_divisions(folder: Path) -> tuple[str, str]:
    path = folder / "divisions.csv"
    lines = path.read_text("utf-8").splitlines()
    lines[2] = lines[2].replace("440402", "44040", 1)     # line 3: "district,44040,香洲区,440400"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return "divisions.csv:3", "44040"


def _break_aliases(folder: Path) -> tuple[str, str]:
    (folder / "aliases.csv").write_text("alias,code,kind,note\n拱北口岸,440402005,landmark,\n老香洲,440499,area,\n",
                                        "utf-8")
    return "aliases.csv:3", "440499"


def _break_toml(folder: Path) -> tuple[str, str]:
    (folder / "gazetteer.toml").unlink()
    return "gazetteer.toml", "missing"


def _break_boundaries(folder: Path) -> tuple[str, str]:
    path = folder / "boundaries" / "districts.geojson"
    data = json.loads(path.read_text("utf-8"))
    data["features"][1]["properties"]["code"] = "440499"
    path.write_text(json.dumps(data), "utf-8")
    return "districts.geojson: feature 2", "440499"


def _break_addresses(folder: Path) -> tuple[str, str]:
    (folder / "addresses.csv").write_text(
        "address,district_code,street_code,community_code,lon,lat\n"
        "香洲区某花园1栋,440402,,,113.55,22.25\n"
        "香洲区某花园2栋,440402,,,abc,22.25\n", "utf-8")
    return "addresses.csv:3", "abc"


def _break_roads(folder: Path) -> tuple[str, str]:
    (folder / "roads.csv").write_text("road,district_code,from_number,to_number,note\n"
                                      "珠海大道,440402,100,1,\n", "utf-8")
    return "roads.csv:2", "from ≤ to"


def _break_successors(folder: Path) -> tuple[str, str]:
    with (folder / "gazetteer.toml").open("a", encoding="utf-8") as f:
        f.write('\n[successors]\n"440402" = ["440999"]\n')
    return "gazetteer.toml", "successors.440402"


BREAKERS = [_break_divisions, _break_aliases, _break_toml, _break_boundaries, _break_addresses, _break_roads,
            _break_successors]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.removeprefix("_break_"))
def test_a_broken_folder_names_the_file_and_line(tmp_path, breaker):
    folder = _copy_zhuhai(tmp_path)
    where, words = breaker(folder)
    with pytest.raises(routing.GazetteerError) as info:
        routing.compile_gazetteer(folder)
    message = str(info.value)
    assert where in message and words in message
    with pytest.raises(routing.GazetteerError):
        routing.import_gazetteer(folder, tmp_path / "never.pickle")
    assert not (tmp_path / "never.pickle").exists()


def test_an_import_does_not_replace_a_good_index_with_a_broken_folder(tmp_path):
    dest = tmp_path / "zh.pickle"
    routing.import_gazetteer(routing.packaged_city("zhuhai"), dest)
    good = dest.read_bytes()
    folder = _copy_zhuhai(tmp_path)
    _break_addresses(folder)
    with pytest.raises(routing.GazetteerError):
        routing.import_gazetteer(folder, dest)
    assert dest.read_bytes() == good


# ---------------------------------------------------------------------------------------- rules


def test_dapeng_streets_go_to_dapeng(sz_rules):
    for street in DAPENG_STREETS:
        r = sz_rules.route("440307", street, "E0102", "投诉")
        assert (r.unit_code, r.transfer_target) == ("dapeng", "queue:district-dapeng")
        assert r.rule == "rules.csv:4"


def test_other_longgang_streets_go_to_longgang(sz_rules):
    r = sz_rules.route("440307", "440307014", "E0102", "投诉")
    assert (r.unit_code, r.transfer_target) == ("440307", "queue:district-440307")
    assert sz_rules.route("440307", None).unit_code == "440307"   # no street known: the district


def test_every_district_goes_to_its_own_centre(sz_rules):
    for d in SHENZHEN_DISTRICTS:
        assert sz_rules.route(d, None, "C0101", "求助") == routing.Route(d, f"queue:district-{d}", "rules.csv:5")


def test_unplaced_has_no_route(sz_rules):
    r = sz_rules.route(None, "440307009", "E0102", "投诉")
    assert (r.unit_code, r.transfer_target) == (None, None) and "unplaced" in r.rule
    assert routing.load_rules(None).route("").unit_code is None


def test_without_a_rules_file_every_case_goes_to_its_district():
    r = routing.load_rules(None).route("440305", "440305007", "E0102", "投诉")
    assert r == routing.Route("440305", "queue:district-440305", "default: district centre")


RULES_HEADER = "district,street,category,request_type,unit,transfer\n"


def test_first_matching_rule_wins_and_category_patterns(tmp_path):
    path = tmp_path / "rules.csv"
    path.write_text("# water problems in 福田 go to the water department\n" + RULES_HEADER +
                    "440304,*,C02*,*,440304-water,ext:8302\n"
                    "440304,*,C02*,*,never-reached,ext:1\n"
                    "440305,*,E01*|C0101,咨询|建议,440305-info,\n"
                    "*,440306018,*,*,street-{street},queue:{district}-{street}\n", "utf-8")
    rules = routing.load_rules(path)
    water = rules.route("440304", "440304011", "C0203", "投诉")
    assert water == routing.Route("440304-water", "ext:8302", "rules.csv:3")
    assert rules.route("440304", None, "E0102", "投诉").unit_code == "440304"        # other category: default
    assert rules.route("440305", None, "C0203", "投诉").unit_code == "440305"        # other district: default
    assert rules.route("440304", None, None, "投诉").unit_code == "440304"           # no category: not C02*
    assert rules.route("440305", None, "E0105", "咨询") == routing.Route("440305-info", None, "rules.csv:5")
    assert rules.route("440305", None, "C0101", "建议").unit_code == "440305-info"
    assert rules.route("440305", None, "E0105", "投诉").unit_code == "440305"        # request type differs
    assert rules.route("440306", "440306018") == routing.Route("street-440306018", "queue:440306-440306018",
                                                               "rules.csv:6")


@pytest.mark.parametrize("body, line, words", [
    ("district,street,category,unit,transfer\n*,*,*,x,queue:a\n", 1, "columns must be"),
    (RULES_HEADER + "*,*,*,*,bad unit!,queue:a\n", 2, "unit 'bad unit!'"),
    (RULES_HEADER + "440304,*,*,*,u1,queue:a\n*,*,*,*,u2,phone:123\n", 3, "must start with queue: or ext:"),
    ("# a comment\n\n" + RULES_HEADER + "# another\n440304,*,*,*,u1,queue:a\n*,*,*,*,u2,phone:123\n", 6,
     "must start with queue: or ext:"),
    (RULES_HEADER + "*,*,*,*,{city},queue:a\n", 2, "only {district} and {street}"),
    (RULES_HEADER + ",*,*,*,u,queue:a\n", 2, "district ''"),
    (RULES_HEADER + "440 304,*,*,*,u,queue:a\n", 2, "district '440 304'"),
    (RULES_HEADER + "440304,*,*\n", 2, "unit ''"),
])
def test_malformed_rules_name_the_line(tmp_path, body, line, words):
    path = tmp_path / "bad_rules.csv"
    path.write_text(body, "utf-8")
    with pytest.raises(routing.RulesError) as info:
        routing.load_rules(path)
    assert f"bad_rules.csv:{line}:" in str(info.value) and words in str(info.value)


def test_a_missing_rules_file_is_an_error_not_the_default(tmp_path):
    with pytest.raises(routing.RulesError, match="cannot read"):
        routing.load_rules(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------- text


@pytest.mark.parametrize("spoken, value", [("一千零八", 1008), ("六千零八", 6008), ("三十八", 38), ("十", 10),
                                           ("一二三", 123), ("两百", 200), ("九千九百九十九", 9999), ("零", 0)])
def test_chinese_numerals(spoken, value):
    assert chinese_numeral(spoken) == value


def test_cleaning_makes_one_canonical_form(sz):
    clean = sz.cleaner.clean
    assert clean("福田區華強北路１００２號") == clean("福田区华强北路1002号") == "福田区华强北路1002号"
    assert clean("深南大道六千零八号") == "深南大道6008号"
    assert clean("梅林一村") == "梅林一村"                  # a numeral in a name is not a house number
    assert clean("ＡＢＣ座") == "abc座"
    assert "附近" not in clean("科技园附近") and "交汇处" not in clean("a路与b路交汇处")
    assert clean("  【福田区】  ") == "福田区"
    assert Cleaner({}).clean("福田區") == "福田區"       # without the table, traditional stays


def test_house_part_and_estate_names():
    assert split_house_part("金海燕花园4栋1单元4层4d") == ("金海燕花园", "4栋1单元4层4d")
    assert split_house_part("金海燕花园") == ("金海燕花园", "")
    assert core_names("金海燕花园4栋") == ["金海燕花园", "金海燕"]
    # (core_names takes cleaned text: lower case)
    assert core_names("中山颐景花园景c座") == ["中山颐景花园景", "中山颐景花园", "中山颐景"]
    assert core_names("景苑大厦景苑大厦") == ["景苑大厦"]        # 景苑 alone is too short to be distinctive
    assert core_names("安花园") == [] and core_names("5栋") == []


def test_confident_needs_a_place_and_the_threshold(sz):
    p = place("龙岗区布吉街道", sz)
    assert p.confident(0.9) and p.confident(p.confidence) and not p.confident(1.01)
    amb = place("深南大道", sz)
    assert amb.confident(0.3) and not amb.confident(0.9)


# ---------------------------------------------------------------------------------------- evaluation


def _labelled_file(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["address", "district"])
        w.writerow(["龙岗区布吉街道", "龙岗区"])        # right, confident
        w.writerow(["深南大道", "福田"])               # ambiguous (a name without 区 is accepted)
        w.writerow(["不知道在哪里", "440305"])          # unplaced (a code is accepted)
        w.writerow(["福田区华强北", "南山区"])          # wrong, confident
    return path


def test_evaluate_counts_and_confusion(sz, tmp_path):
    rows = read_labelled(_labelled_file(tmp_path), sz)
    assert [r.district_code for r in rows] == ["440307", "440304", "440305", "440305"]
    report = evaluate(sz, rows, 0.9)
    amb_right = place("深南大道", sz).district_code == "440304"
    assert (report.total, report.placed, report.confident, report.confident_correct) == (4, 3, 2, 1)
    assert report.correct == 1 + amb_right
    assert report.precision_above == 0.5 and report.coverage == 0.5
    assert report.confusion[("440305", "未定位")] == 1 and report.confusion[("440305", "440304")] == 1
    assert report.wrong_confident == [("福田区华强北", "440305", "440304", place("福田区华强北", sz).confidence)]
    text = format_report(sz, report, 0.9, "title")
    assert text.splitlines()[0] == "title"
    assert "accuracy" in text and "precision ≥ 0.9" in text and "coverage ≥ 0.9" in text
    assert "wrong above threshold: '福田区华强北' expected 南山区, placed 福田区" in text
    assert "未定位" in text


@pytest.mark.parametrize("content, words", [
    ("text,district\n福田区,福田区\n", ":1: needs columns address and district"),
    ("address,district\n福田区,天河区\n", ":2: district '天河区' is not one of 深圳市's"),
])
def test_evaluate_refuses_a_bad_file(sz, tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_text(content, "utf-8")
    with pytest.raises(EvalFileError, match=re.escape(words)):
        read_labelled(path, sz)


# ---------------------------------------------------------------------------------------- CLI


def hotline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_cli_geocode_prints_the_place_the_evidence_and_the_route():
    out = hotline("geocode", "龙岗区布吉街道")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert "龙岗区" in first and "布吉街道" in first and "可自动派遣" in first
    assert "区 440307" in out.stdout and "街道 440307014" in out.stdout
    assert "「布吉街道」→ 布吉街道" in out.stdout
    assert "承办单位 440307" in out.stdout
    dapeng = hotline("geocode", "龙岗区南澳街道")
    assert "承办单位 dapeng" in dapeng.stdout and "queue:district-dapeng" in dapeng.stdout


def test_cli_geocode_json_and_unplaced():
    out = hotline("geocode", "--json", "深南大道")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["confidence"] < 0.9 and {a["district_code"] for a in data["alternatives"]} & {"440304", "440305"}
    nowhere = hotline("geocode", "不知道在哪里")
    assert nowhere.returncode == 0 and nowhere.stdout.startswith("未定位:") and "深圳市" in nowhere.stdout


def test_cli_routing_eval_prints_measures_and_a_confusion_table():
    out = hotline("routing", "eval", str(DEV_FILE), "--column", "address_without_district", "--threshold", "0.9")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    total = sum(1 for _ in csv.DictReader(DEV_FILE.open(encoding="utf-8")))
    assert re.search(rf"addresses\s+{total}\b", text)
    measures = {name: float(v) for name, v in re.findall(r"^(accuracy|precision ≥ 0\.9|coverage ≥ 0\.9)\s+([\d.]+)%",
                                                            text, re.M)}
    assert set(measures) == {"accuracy", "precision ≥ 0.9", "coverage ≥ 0.9"}
    assert all(0 <= v <= 100 for v in measures.values()) and measures["accuracy"] > 80
    assert "confusion (rows: expected, columns: placed)" in text
    table = text.split("confusion (rows: expected, columns: placed)\n", 1)[1].splitlines()
    assert "南山区" in table[0] and "福田区" in table[0]
    nanshan_row = next(line for line in table if line.startswith("南山区"))
    assert sum(map(int, nanshan_row.split()[1:])) == sum(1 for r in csv.DictReader(DEV_FILE.open(encoding="utf-8"))
                                                         if r["district"] == "南山区")


def test_cli_routing_eval_of_a_bad_file_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,district\n福田区,福田区\n", "utf-8")
    out = hotline("routing", "eval", str(bad))
    assert out.returncode != 0 and "bad.csv:1" in out.stderr


def test_cli_routing_import(tmp_path):
    folder = _copy_zhuhai(tmp_path)
    dest = tmp_path / "idx" / "zh.pickle"
    out = hotline("routing", "import", str(folder), "--output", str(dest))
    assert out.returncode == 0, out.stderr
    assert "珠海市 (440400): 3 districts" in out.stdout and str(dest) in out.stdout
    assert place("香洲区拱北街道", routing.load_gazetteer(dest)).street_code == "440402005"

    _break_addresses(folder)
    broken = hotline("routing", "import", str(folder), "--output", str(tmp_path / "broken.pickle"))
    assert broken.returncode != 0
    assert "gazetteer not imported" in broken.stderr and "addresses.csv:3" in broken.stderr
    assert not (tmp_path / "broken.pickle").exists()


def test_cli_routing_import_installs_into_data_dir(tmp_path):
    out = hotline("routing", "import", str(routing.packaged_city("zhuhai")))
    assert out.returncode == 0, out.stderr
    assert "installed" in out.stdout
    installed = Path(os.environ["HOTLINE_DATA_DIR"]) / "gazetteer.pickle"
    assert installed.is_file()
    # from now on the hotline places addresses in the installed city
    geo = hotline("geocode", "香洲区拱北街道")
    assert geo.returncode == 0 and "香洲区" in geo.stdout and "拱北街道" in geo.stdout


def test_cli_geocode_uses_the_placements_people_confirmed():
    before = hotline("geocode", "某某新奇苑9栋")
    assert before.returncode == 0 and before.stdout.startswith("未定位:")
    seeded = hotline("seed", "--no-demo-users")
    assert seeded.returncode == 0, seeded.stderr
    from case_bridge import CaseCore, NewCase
    from hotline.db import Database
    from hotline.settings import get_settings
    get_settings.cache_clear()
    settings = get_settings()
    db = Database(settings.database_url)
    try:
        with db.session() as s:
            CaseCore(settings).create_case(s, NewCase(description="井盖丢失", category_key="C0114",
                                                      address_text="南山区某某新奇苑1栋", district_code="440305",
                                                      place_confirmed=True))
    finally:
        db.dispose()
    after = hotline("geocode", "某某新奇苑9栋")
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("南山区") and "区 440305" in after.stdout
    assert "「某某新奇苑」→ 某某新奇苑  (learned" in after.stdout
