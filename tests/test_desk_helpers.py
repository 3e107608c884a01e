"""The agent desk's helpers: the district map (SVG), the category picker search, the knowledge base."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
from markupsafe import Markup
from shapely.geometry import MultiPolygon, box

from agent_ui.category_search import CategoryIndex
from agent_ui.knowledge import Entry, load_knowledge
from agent_ui.maps import district_map_svg
from case_bridge import Catalogue, Category, load_catalogue, load_settings_gazetteer
from hotline.settings import load_settings

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def shenzhen():
    return load_settings_gazetteer(load_settings())


@pytest.fixture(scope="module")
def index():
    return CategoryIndex(load_catalogue())


def _view_box(root) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in root.get("viewBox").split())
    return x, y, w, h


def _fake_gazetteer(name: str = "福田区"):
    class Fake:     # weakly referable, like the real one
        pass
    fake = Fake()
    fake.shapes = {"000001": box(114.0, 22.5, 114.1, 22.6),
                   "000002": MultiPolygon([box(114.1, 22.5, 114.3, 22.6), box(114.31, 22.5, 114.33, 22.52)])}
    fake.divisions = {"000001": SimpleNamespace(name=name), "000002": SimpleNamespace(name="南山区")}
    fake.district_codes = ["000001", "000002", "000003"]     # 000003 has no shape: not drawn
    return fake


# ---------------------------------------------------------------- map
def test_map_is_wellformed_svg_with_a_path_per_district(shenzhen):
    svg = district_map_svg(shenzhen)
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))
    assert root.tag == SVG + "svg" and root.get("role") == "img" and root.get("aria-label")
    paths = root.findall(SVG + "path")
    with_shape = [c for c in shenzhen.district_codes if c in shenzhen.shapes]
    assert sorted(p.get("data-code") for p in paths) == sorted(with_shape)
    assert all("district" in p.get("class").split() for p in paths)
    assert {p.find(SVG + "title").text for p in paths} == {shenzhen.divisions[c].name for c in with_shape}
    assert not root.findall(SVG + "circle")
    assert len(svg.encode()) < 30_000
    _, _, w, h = _view_box(root)
    assert w == 320 and 0 < h < 320


def test_map_marks_the_chosen_district_and_the_point(shenzhen):
    root = ET.fromstring(str(district_map_svg(shenzhen, chosen="440304", point=(114.055, 22.541), width=400)))
    chosen = [p for p in root.findall(SVG + "path") if "chosen" in p.get("class").split()]
    assert [p.get("data-code") for p in chosen] == ["440304"]
    others = {p.get("fill") for p in root.findall(SVG + "path") if p not in chosen}
    assert chosen[0].get("fill") not in others          # visible without the stylesheet
    assert root.get("aria-label") == "区域地图：福田区"
    (circle,) = root.findall(SVG + "circle")
    x0, y0, w, h = _view_box(root)
    assert w == 400
    assert x0 <= float(circle.get("cx")) <= x0 + w and y0 <= float(circle.get("cy")) <= y0 + h


def test_map_leaves_out_a_point_outside_the_city_and_an_unknown_choice(shenzhen):
    root = ET.fromstring(str(district_map_svg(shenzhen, chosen="999999", point=(116.4, 39.9))))
    assert not root.findall(SVG + "circle")
    assert not [p for p in root.findall(SVG + "path") if "chosen" in p.get("class")]
    assert root.get("aria-label") == "区域地图"


def test_map_is_the_same_on_a_second_call(shenzhen):
    assert district_map_svg(shenzhen, "440305") == district_map_svg(shenzhen, "440305")


def test_map_escapes_names_from_the_data():
    hostile = '<script>alert(1)</script>"&'
    fake = _fake_gazetteer(hostile)
    svg = str(district_map_svg(fake, chosen="000001", point=(114.05, 22.55)))
    assert "<script" not in svg
    root = ET.fromstring(svg)                          # still well-formed
    paths = root.findall(SVG + "path")
    assert [p.get("data-code") for p in paths] == ["000002", "000001"]   # the chosen one is drawn last
    assert paths[1].find(SVG + "title").text == hostile
    assert root.get("aria-label") == f"区域地图：{hostile}"
    assert len(root.findall(SVG + "circle")) == 1
    # the small part of the MultiPolygon is still drawn as its own ring
    assert len(re.findall("M", paths[0].get("d"))) == 2


def test_map_works_without_a_cache_for_an_unhashable_stand_in():
    real = _fake_gazetteer()
    fake = SimpleNamespace(shapes=real.shapes, divisions=real.divisions, district_codes=real.district_codes)
    root = ET.fromstring(str(district_map_svg(fake, chosen="000002")))
    assert len(root.findall(SVG + "path")) == 2


# ---------------------------------------------------------------- category search
def _keys(categories) -> list[str]:
    return [c.key for c in categories]


def test_search_by_key_name_and_synonym(index):
    assert _keys(index.search("E0102"))[:1] == ["E0102"]
    assert _keys(index.search("e0102")) == ["E0102"]
    assert _keys(index.search("路灯"))[:2] == ["C0118", "C0106"]      # exact name before name prefix
    hits = _keys(index.search("垃圾", limit=20))
    # name prefix (垃圾间, 垃圾箱) > name contains (暴露垃圾 …) > synonym only (水域不洁: 河道垃圾)
    assert hits[:2] == ["C0304", "C0305"]
    assert hits.index("E0102") < hits.index("E0105")
    assert _keys(index.search("僵尸车")) == ["E0107"]


def test_search_by_pinyin(index):
    assert _keys(index.search("ljd"))[:1] == ["E0102"]        # initials of 垃圾堆 (a synonym)
    assert _keys(index.search("lajidui"))[:1] == ["E0102"]    # full pinyin prefix
    assert _keys(index.search("jinggai"))[:1] == ["C0114"]
    assert _keys(index.search("LA JI"))[:2] == ["C0304", "C0305"]
    hits = _keys(index.search("jg", limit=50))
    assert hits[0] == "C0114" and "C0101" in hits            # initials prefix before initials contained


def _category(key: str, name: str, *synonyms: str) -> Category:
    kind = "部件" if key[0] == "C" else "事件"
    return Category(key, kind, key[1:3], "市容环境", key[3:5], name, synonyms)


def test_search_by_initials_of_a_synonym_ties_by_key():
    ix = CategoryIndex(Catalogue([_category("E0199", "其他问题", "垃圾堆积"), _category("E0102", "暴露垃圾", "垃圾堆积"),
                                  _category("C0305", "垃圾箱")]))
    assert _keys(ix.search("ljdj")) == ["E0102", "E0199"]
    assert _keys(ix.search("lajiduiji")) == ["E0102", "E0199"]
    assert _keys(ix.search("laji")) == ["C0305", "E0102", "E0199"]
    assert _keys(ix.search("垃圾堆积")) == ["E0102", "E0199"]          # synonym, by key
    assert _keys(ix.search("垃圾")) == ["C0305", "E0102", "E0199"]     # name prefix > name contains > synonym
    assert _keys(ix.search("ljx")) == ["C0305"]


def test_search_ranks_initials_prefix_then_full_pinyin_then_initials_contained():
    ix = CategoryIndex(Catalogue([_category("C0101", "安全"),      # anquan: full pinyin prefix
                                  _category("C0102", "大安宁"),    # dan: initials contain "an"
                                  _category("C0199", "安宁")]))    # an: initials prefix
    assert _keys(ix.search("an")) == ["C0199", "C0101", "C0102"]


def test_search_empty_and_nonsense(index):
    assert index.search("") == [] and index.search("   ") == []
    assert index.search("qqqqzzzz") == [] and index.search("火星基地") == []
    assert len(index.search("j", limit=5)) == 5


def test_suggest_from_a_description(index):
    assert _keys(index.suggest("小区门口垃圾堆了好几天没人清，井盖也丢了")) == ["E0102", "C0114"]
    assert index.suggest("") == [] and index.suggest("你好") == []
    assert len(index.suggest("垃圾 井盖 路灯不亮 违建", limit=2)) == 2


# ---------------------------------------------------------------- knowledge base
def test_the_shipped_knowledge_loads_and_names_real_categories():
    kb = load_knowledge()
    assert len(kb) >= 20
    ids = [e.id for e in kb]
    assert len(set(ids)) == len(ids)
    catalogue = load_catalogue()
    assert all(e.category_key in catalogue for e in kb if e.category_key)
    assert all(isinstance(e, Entry) and e.question and e.answer for e in kb)


def test_knowledge_search():
    kb = load_knowledge()
    assert "装修垃圾" in kb.search("装修垃圾")[0].question
    assert kb.search("zxlj")[0] == kb.search("装修垃圾")[0]            # pinyin initials of a keyword
    assert "装修垃圾" in kb.search("我家装修垃圾怎么处理")[0].question  # a sentence naming a keyword
    assert "夜间施工" in kb.search("夜间 施工")[0].question
    assert kb.search("", limit=3) == list(kb)[:3]
    assert kb.search("qqqqzzzz") == []
    assert kb.get("kb-001").id == "kb-001"
    with pytest.raises(KeyError):
        kb.get("kb-999")


def _write(tmp_path, entries):
    path = tmp_path / "knowledge.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), "utf-8")
    return path


GOOD = {"id": "kb-1", "question": "问题", "answer": "回答", "category_key": None, "keywords": ["关键词"]}


def test_a_duplicate_id_names_the_entry(tmp_path):
    path = _write(tmp_path, [GOOD, dict(GOOD, question="另一个问题")])
    with pytest.raises(ValueError, match=r"entry 2 \(id 'kb-1'\).*already used by entry 1"):
        load_knowledge(path)


@pytest.mark.parametrize("change, message", [
    ({"answer": "  "}, "answer must be"),
    ({"question": ""}, "question must be"),
    ({"category_key": "X1"}, "category_key"),
    ({"keywords": "装修"}, "keywords"),
])
def test_a_broken_entry_names_itself(tmp_path, change, message):
    path = _write(tmp_path, [GOOD, dict(GOOD, id="kb-2", **change)])
    with pytest.raises(ValueError, match=rf"knowledge.json: entry 2 \(id 'kb-2'\): {message}"):
        load_knowledge(path)


def test_a_file_that_is_not_a_list_of_entries(tmp_path):
    path = tmp_path / "knowledge.json"
    path.write_text("{not json", "utf-8")
    with pytest.raises(ValueError, match="knowledge.json: cannot read"):
        load_knowledge(path)
    with pytest.raises(ValueError, match="entry 1: id"):
        load_knowledge(_write(tmp_path, [dict(GOOD, id="")]))
