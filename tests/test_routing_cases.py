"""Routing inside the case core, on SQLite and PostgreSQL: placing a new case from its address,
routing it to a handling unit, auto-dispatching only what is placed confidently, relocating,
and learning from the placements people confirm."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from case_bridge import ActionIn, Case, CaseCore, CaseEvent, HandlingUnit, NewCase, WorkflowError
from case_bridge.models import AddressEvidence

AUTO = 0.9   # the default auto_route_threshold


def new(**kw) -> NewCase:
    base = dict(description="路边垃圾堆了三天没人清", category_key="E0102", address_text="")
    base.update(kw)
    return NewCase(**base)


def create(db, core, actor, **kw) -> str:
    with db.session() as s:
        return core.create_case(s, new(**kw), actor).case.number


def act(db, core, number, action, actor, **params) -> str:
    with db.session() as s:
        return core.apply_action(s, number, action, actor, ActionIn(**params)).state


def get(db, number) -> Case:
    with db.session() as s:
        return s.scalar(select(Case).where(Case.number == number))


def events(db, number) -> list[CaseEvent]:
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        return list(s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)))


def assert_one_event(db, number, action) -> CaseEvent:
    """The case's only event of this kind (asserts there is exactly one)."""
    found = [e for e in events(db, number) if e.action == action]
    assert len(found) == 1, [e.action for e in events(db, number)]
    return found[0]


def evidence_rows(db) -> list[AddressEvidence]:
    with db.session() as s:
        return list(s.scalars(select(AddressEvidence).order_by(AddressEvidence.id)))


def assert_waits_for_the_dispatcher(db, core, number) -> None:
    case = get(db, number)
    assert case.state == "filed" and case.dispatched_at is None and case.due_at is None
    assert "dispatch" not in [e.action for e in events(db, number)]
    with db.session() as s:
        assert number in [c.number for c in core.dispatcher_queue(s)]


# ---------------------------------------------------------------------------------------- create


def test_a_confident_address_is_placed_routed_and_dispatched_by_the_system(db, core, people):
    n = create(db, core, people["agent1"], address_text="南山区科技园科苑路15号")
    case = get(db, n)
    assert case.district_code == "440305" and case.placement_confidence >= AUTO
    assert case.street_code == "440305007" and case.community_code.startswith("440305007")
    assert case.grid_code == case.community_code + "00"
    assert case.lon is not None and 113.7 < case.lon < 114.7 and 22.3 < case.lat < 22.9
    assert case.handling_unit_code == "440305" and case.state == "dispatched"
    steps = [(e.action, e.actor_role, e.actor) for e in events(db, n)]
    assert steps == [("create", "agent", "agent1"), ("file", "agent", "agent1"), ("dispatch", "system", "system")]
    created = assert_one_event(db, n, "create").data
    assert created["placement"]["by"] == "router" and created["placement"]["district_code"] == "440305"
    assert created["placement"]["confidence"] >= AUTO
    assert any("南山区" in e for e in created["placement"]["evidence"])
    assert created["route"] == {"unit": "440305", "transfer": "queue:district-440305", "rule": "rules.csv:5"}
    assert assert_one_event(db, n, "dispatch").data["unit"] == "440305"


def test_an_ambiguous_address_waits_for_the_dispatcher_with_the_alternatives(db, core, people):
    n = create(db, core, people["agent1"], address_text="深南大道")
    case = get(db, n)
    assert case.placement_confidence < AUTO
    assert_waits_for_the_dispatcher(db, core, n)
    placement = assert_one_event(db, n, "create").data["placement"]
    alternatives = {a["district_code"]: a for a in placement["alternatives"]}
    assert {placement["district_code"], *alternatives} >= {"440304", "440305"}
    names = {"440304": "福田区", "440305": "南山区"}
    assert all(a["name"] == names[code] for code, a in alternatives.items() if code in names)
    assert all(0 < a["confidence"] < AUTO for a in alternatives.values())
    # the dispatcher settles it by giving the district; the case is then handled there
    assert act(db, core, n, "relocate", people["disp1"], district_code="440304") == "filed"
    assert act(db, core, n, "dispatch", people["disp1"]) == "dispatched"
    assert get(db, n).handling_unit_code == "440304"


def test_the_house_number_settles_the_road(db, core, people):
    n = create(db, core, people["agent1"], address_text="深南大道9999号")
    case = get(db, n)
    assert (case.district_code, case.handling_unit_code, case.state) == ("440305", "440305", "dispatched")


@pytest.mark.parametrize("address, street", [("大鹏新区南澳街道", "440307011"), ("龙岗区葵涌街道", "440307009"),
                                             ("大鹏新区大鹏街道", "440307010")])
def test_dapeng_addresses_go_to_the_dapeng_centre(db, core, people, address, street):
    n = create(db, core, people["agent1"], address_text=address)
    case = get(db, n)
    assert (case.district_code, case.street_code) == ("440307", street)
    assert case.handling_unit_code == "dapeng" and case.state == "dispatched"
    route = assert_one_event(db, n, "create").data["route"]
    assert route == {"unit": "dapeng", "transfer": "queue:district-dapeng", "rule": "rules.csv:4"}
    assert assert_one_event(db, n, "dispatch").data["unit"] == "dapeng"


def test_other_longgang_streets_go_to_longgang(db, core, people):
    n = create(db, core, people["agent1"], address_text="龙岗区布吉街道")
    assert (get(db, n).handling_unit_code, get(db, n).state) == ("440307", "dispatched")


def test_dapeng_new_area_without_a_street_is_not_auto_dispatched_to_longgang(db, core, people):
    n = create(db, core, people["agent1"], address_text="大鹏新区迎宾路")
    case = get(db, n)
    assert case.handling_unit_code == "dapeng" or case.state == "filed"


@pytest.mark.parametrize("address, words", [("不知道在哪里", "no name of a place"),
                                            ("广州市天河区体育西路", "广州市"),
                                            ("13800138000", "phone number")])
def test_an_unplaced_address_has_no_district_and_no_unit(db, core, people, address, words):
    n = create(db, core, people["agent1"], address_text=address)
    case = get(db, n)
    assert case.district_code is None and case.street_code is None and case.grid_code is None
    assert case.handling_unit_code is None and case.placement_confidence == 0.0
    assert_waits_for_the_dispatcher(db, core, n)
    data = assert_one_event(db, n, "create").data
    assert data["placement"]["district_code"] is None and words in data["placement"]["reason"]
    assert data["route"] == {"unit": None, "transfer": None, "rule": "unplaced: no district"}
    with db.session() as s:   # no district sees an unplaced case
        assert core.list_cases(s, people["futian1"]) == [] and core.list_cases(s, people["nanshan1"]) == []


def test_no_address_at_all(db, core, people):
    n = create(db, core, people["agent1"])
    case = get(db, n)
    assert case.district_code is None and case.placement_confidence is None and case.handling_unit_code is None
    assert assert_one_event(db, n, "create").data["placement"] == {"by": "router", "reason": "no address given"}
    assert_waits_for_the_dispatcher(db, core, n)


def test_a_point_places_the_case_without_an_address(db, core, people):
    n = create(db, core, people["agent1"], lon=114.0579, lat=22.5431)
    case = get(db, n)
    assert (case.district_code, case.handling_unit_code, case.state) == ("440304", "440304", "dispatched")
    assert (case.lon, case.lat) == (114.0579, 22.5431)


def test_a_district_given_by_a_person_is_kept(db, core, people):
    n = create(db, core, people["agent1"], address_text="南山区科技园科苑路15号", district_code="440304",
               placement_confidence=0.95)
    case = get(db, n)
    assert case.district_code == "440304" and case.handling_unit_code == "440304"
    # the client's 0.95 decides nothing: given without a person's confirmation, it waits for the dispatcher
    assert case.state == "filed" and case.placement_confidence is None
    assert assert_one_event(db, n, "create").data["placement"] == {"by": "person", "district_code": "440304"}
    assert evidence_rows(db) == []   # given, but not confirmed: nothing learned


def test_confidence_below_the_threshold_is_not_dispatched(db, settings, clock, people):
    strict = CaseCore(settings.model_copy(update={"auto_route_threshold": 0.99}), now=clock)
    n = create(db, strict, people["agent1"], address_text="福田")   # a short name alone: about 0.93
    case = get(db, n)
    assert case.district_code == "440304" and 0.9 <= case.placement_confidence < 0.99
    assert_waits_for_the_dispatcher(db, strict, n)


def test_a_rules_file_routes_a_category_to_a_department(db, settings, clock, people, tmp_path):
    rules = tmp_path / "rules.csv"
    rules.write_text("district,street,category,request_type,unit,transfer\n"
                     "440304,*,C02*,*,440304-water,ext:8302\n"
                     "*,*,*,*,{district},queue:district-{district}\n", "utf-8")
    core = CaseCore(settings.model_copy(update={"routing_rules_file": rules}), now=clock)
    # the rule names a unit that does not exist yet: the case goes to the district's centre
    n = create(db, core, people["agent1"], address_text="福田区华强北路1002号", category_key="C0203")
    assert get(db, n).handling_unit_code == "440304"
    assert assert_one_event(db, n, "create").data["route"]["rule"] == "rules.csv:2"
    with db.session() as s:
        s.add(HandlingUnit(code="440304-water", name="福田区水务局", kind="department", district_code="440304",
                           street_codes=[], queue="ext-8302"))
    water = create(db, core, people["agent1"], address_text="福田区华强北路1002号", category_key="C0203")
    assert (get(db, water).handling_unit_code, get(db, water).state) == ("440304-water", "dispatched")
    assert assert_one_event(db, water, "create").data["route"] == {"unit": "440304-water", "transfer": "ext:8302",
                                                         "rule": "rules.csv:2"}
    other = create(db, core, people["agent1"], address_text="福田区华强北路1002号", category_key="E0102")
    assert get(db, other).handling_unit_code == "440304"
    # a waiting case relocated to 福田 and to a C02 category is routed again, to the department
    waiting = create(db, core, people["agent1"], address_text="深南大道", category_key="E0102")
    assert get(db, waiting).state == "filed"
    act(db, core, waiting, "relocate", people["disp1"], district_code="440304", category_key="C0203")
    assert (get(db, waiting).category_key, get(db, waiting).handling_unit_code) == ("C0203", "440304-water")
    assert assert_one_event(db, waiting, "relocate").data["route"]["unit"] == "440304-water"


# ---------------------------------------------------------------------------------------- relocate


def test_relocate_with_a_new_address_places_and_routes_again(db, core, people):
    n = create(db, core, people["agent1"], address_text="不知道在哪里")
    assert get(db, n).handling_unit_code is None
    assert act(db, core, n, "relocate", people["disp1"], address_text="南山区科技园科苑路15号") == "filed"
    case = get(db, n)
    assert (case.address_text, case.district_code, case.handling_unit_code) == ("南山区科技园科苑路15号", "440305",
                                                                                  "440305")
    assert case.placement_confidence >= AUTO
    first = assert_one_event(db, n, "relocate")
    assert first.actor == "disp1" and first.from_state == first.to_state == "filed"
    assert first.data["before"] == {"address_text": "不知道在哪里", "district_code": None, "unit": None,
                                    "category_key": "E0102"}
    assert first.data["placement"]["district_code"] == "440305"
    assert first.data["route"]["unit"] == "440305"

    assert act(db, core, n, "relocate", people["agent1"], address_text="龙岗区南澳街道") == "filed"
    case = get(db, n)
    assert (case.district_code, case.street_code, case.handling_unit_code) == ("440307", "440307011", "dapeng")
    second = [e for e in events(db, n) if e.action == "relocate"][1]
    assert second.data["before"]["district_code"] == "440305" and second.data["before"]["unit"] == "440305"
    assert second.data["route"] == {"unit": "dapeng", "transfer": "queue:district-dapeng", "rule": "rules.csv:4"}
    assert evidence_rows(db) == []   # the router placed it: nobody confirmed anything


def test_relocate_to_an_address_that_cannot_be_placed_clears_the_place(db, core, people):
    n = create(db, core, people["agent1"], address_text="深南大道")
    act(db, core, n, "relocate", people["disp1"], address_text="不知道在哪里")
    case = get(db, n)
    assert case.district_code is None and case.handling_unit_code is None and case.placement_confidence == 0.0
    assert case.street_code is None and case.grid_code is None and case.lon is None


def test_relocate_with_a_district_is_a_confirmation(db, core, people):
    n = create(db, core, people["agent1"], address_text="某某新奇苑5栋")
    assert get(db, n).district_code is None
    act(db, core, n, "relocate", people["disp1"], district_code="440305")
    case = get(db, n)
    assert (case.district_code, case.placement_confidence, case.handling_unit_code) == ("440305", 1.0, "440305")
    assert case.street_code is None and case.community_code is None and case.grid_code is None
    rows = evidence_rows(db)
    assert [(r.case_id, r.address_text, r.district_code, r.source) for r in rows] == \
           [(case.id, "某某新奇苑5栋", "440305", "dispatcher")]
    data = assert_one_event(db, n, "relocate").data
    assert data["placement"] == {"by": "person", "district_code": "440305"} and data["route"]["unit"] == "440305"
    assert data["before"]["district_code"] is None


def test_relocate_with_a_street_routes_by_the_street(db, core, people):
    n = create(db, core, people["agent1"], address_text="深南大道")
    act(db, core, n, "relocate", people["disp1"], district_code="440307", street_code="440307010")
    case = get(db, n)
    assert (case.street_code, case.handling_unit_code) == ("440307010", "dapeng")
    assert [(r.district_code, r.street_code) for r in evidence_rows(db)] == [("440307", "440307010")]


@pytest.mark.parametrize("actor, params, status, words", [
    ("futian1", dict(address_text="福田区华强北"), 403, "may not"),
    ("nanshan1", dict(district_code="440305"), 403, "may not"),
    ("disp1", dict(), 422, "needs a new address"),
    ("disp1", dict(note="只有备注"), 422, "needs a new address"),
    ("disp1", dict(district_code="110101"), 422, "not a district this hotline serves"),
    ("disp1", dict(category_key="E9999"), 422, "category_key"),
    ("disp1", dict(lon=114.05), 422, "give both or neither"),
])
def test_relocate_refusals_change_nothing(db, core, people, actor, params, status, words):
    n = create(db, core, people["agent1"], address_text="深南大道")
    before = get(db, n)
    with pytest.raises(WorkflowError, match=words) as info:
        act(db, core, n, "relocate", people[actor], **params)
    assert info.value.status == status
    after = get(db, n)
    assert (after.address_text, after.district_code, after.handling_unit_code, after.placement_confidence) == \
           (before.address_text, before.district_code, before.handling_unit_code, before.placement_confidence)
    assert "relocate" not in [e.action for e in events(db, n)] and evidence_rows(db) == []


def test_a_dispatched_case_cannot_be_relocated(db, core, people):
    n = create(db, core, people["agent1"], address_text="福田区华强北路1002号")
    assert get(db, n).state == "dispatched"
    with pytest.raises(WorkflowError, match="relocate") as info:
        act(db, core, n, "relocate", people["disp1"], address_text="南山区科技园")
    assert info.value.status == 409 and get(db, n).handling_unit_code == "440304"


def test_a_returned_case_is_relocated_and_dispatched_to_the_right_district(db, core, people):
    n = create(db, core, people["agent1"], address_text="福田区华强北路1002号")
    act(db, core, n, "return", people["futian1"], note="不属于本区，应为南山区")
    act(db, core, n, "relocate", people["disp1"], district_code="440305")
    assert act(db, core, n, "dispatch", people["disp1"]) == "dispatched"
    assert get(db, n).handling_unit_code == "440305"
    assert act(db, core, n, "accept", people["nanshan1"]) == "in_progress"
    assert [(r.district_code, r.source) for r in evidence_rows(db)] == [("440305", "dispatcher"),
                                                                         ("440305", "district_accept")]


# ---------------------------------------------------------------------------------------- learning


def test_a_confirmed_placement_teaches_the_router(db, core, settings, clock, people):
    before = create(db, core, people["agent1"], address_text="某某新奇苑2栋")
    assert get(db, before).district_code is None
    confirmed = create(db, core, people["agent1"], address_text="南山区某某新奇苑1栋", district_code="440305",
                       place_confirmed=True)
    case = get(db, confirmed)
    assert case.placement_confidence == 1.0 and case.handling_unit_code == "440305"
    assert [(r.case_id, r.address_text, r.district_code, r.source) for r in evidence_rows(db)] == \
           [(case.id, "南山区某某新奇苑1栋", "440305", "agent")]

    fresh = CaseCore(settings, now=clock)   # another process: it reads what was confirmed from the database
    n = create(db, fresh, people["agent1"], address_text="某某新奇苑9栋")
    learned = get(db, n)
    assert (learned.district_code, learned.handling_unit_code) == ("440305", "440305")
    assert learned.placement_confidence >= AUTO and learned.state == "dispatched"
    said = assert_one_event(db, n, "create").data["placement"]["evidence"]
    assert any("某某新奇苑" in e and "learned" in e for e in said)
    # the core that recorded it learns it too
    again = create(db, core, people["agent1"], address_text="某某新奇苑3栋")
    assert get(db, again).district_code == "440305"


def test_confirming_without_a_district_teaches_nothing(db, core, people):
    n = create(db, core, people["agent1"], address_text="某某新奇苑1栋", place_confirmed=True)
    assert get(db, n).district_code is None and evidence_rows(db) == []


def test_a_district_accepting_its_case_is_evidence(db, core, people):
    n = create(db, core, people["agent1"], address_text="福田区华强北路1002号")
    assert (get(db, n).handling_unit_code, get(db, n).state) == ("440304", "dispatched")
    assert evidence_rows(db) == []
    assert act(db, core, n, "accept", people["futian1"]) == "in_progress"
    rows = evidence_rows(db)
    assert [(r.case_id, r.address_text, r.district_code, r.source) for r in rows] == \
           [(get(db, n).id, "福田区华强北路1002号", "440304", "district_accept")]


def test_a_district_that_may_not_accept_records_nothing(db, core, people):
    n = create(db, core, people["agent1"], address_text="福田区华强北路1002号")
    with pytest.raises(WorkflowError):
        act(db, core, n, "accept", people["nanshan1"])
    assert evidence_rows(db) == []


def test_accept_after_dispatch_to_another_district_records_the_accepting_district(db, core, people):
    n = create(db, core, people["agent1"], address_text="福田区某某新奇苑8栋")
    assert get(db, n).handling_unit_code == "440304"
    act(db, core, n, "return", people["futian1"], note="不属于本区，应为南山区")
    act(db, core, n, "dispatch", people["disp1"], unit_code="440305")   # no relocate: only the unit changes
    act(db, core, n, "accept", people["nanshan1"])
    assert [r.district_code for r in evidence_rows(db)] == ["440305"]


def test_evidence_is_append_only_one_row_per_confirmation(db, core, people):
    n = create(db, core, people["agent1"], address_text="某某新奇苑5栋")
    act(db, core, n, "relocate", people["disp1"], district_code="440305")
    act(db, core, n, "relocate", people["disp1"], district_code="440306")
    assert [r.district_code for r in evidence_rows(db)] == ["440305", "440306"]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AddressEvidence)) == 2
