"""The JSON API over HTTP: authentication, district scoping, clear errors, and bus events."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent_ui import create_app
from hotline.bus import InProcessBus

CASE = {"description": "人行道上的井盖丢了", "category_key": "C0114", "district_code": "440304",
        "place_confirmed": True, "caller_phone": "13900139000", "address_text": "福田区福华路"}


@pytest.fixture
def bus():
    return InProcessBus()


@pytest.fixture
def client(settings, db, people, bus, core):
    return TestClient(create_app(settings, db, bus, core=core))   # the test's clock decides what day it is


def test_without_a_valid_key_nothing_is_served(client):
    assert client.get("/api/v1/cases").status_code == 401
    r = client.get("/api/v1/cases", headers={"Authorization": "Bearer hk_wrong"})
    assert r.status_code == 401 and "not valid" in r.json()["detail"]


def test_create_read_act_and_events_on_the_bus(client, people, bus):
    seen = []

    async def record(event):
        seen.append((event.topic, event.data["number"], event.data["state"]))

    bus.subscribe("case.*", record)
    r = client.post("/api/v1/cases", json=CASE, headers={**people.auth("agent1"), "Idempotency-Key": "call-1"})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["state"] == "dispatched" and case["deadline_light"] == "green"
    assert [e["action"] for e in case["timeline"]] == ["create", "file", "dispatch"]
    again = client.post("/api/v1/cases", json=CASE, headers={**people.auth("agent1"), "Idempotency-Key": "call-1"})
    assert again.status_code == 200 and again.json()["number"] == case["number"]
    n = case["number"]
    as_district = client.get(f"/api/v1/cases/{n}", headers=people.auth("futian1")).json()
    assert as_district["allowed_actions"] == ["accept", "return", "request_extension"]
    r = client.post(f"/api/v1/cases/{n}/actions/accept", json={}, headers=people.auth("futian1"))
    assert r.status_code == 200 and r.json()["state"] == "in_progress"
    assert seen == [("case.created", n, "dispatched"), ("case.accept", n, "in_progress")]
    other = client.post("/api/v1/cases", json={**CASE, "description": "另一件事：路灯不亮"},
                        headers={**people.auth("agent1"), "Idempotency-Key": "call-1"})
    assert other.status_code == 422 and n in other.json()["detail"]
    colleague = client.post("/api/v1/cases", json=CASE, headers={**people.auth("super1"), "Idempotency-Key": "call-1"})
    assert colleague.status_code == 201 and colleague.json()["number"] != n   # keys are per user


@pytest.mark.parametrize("who, action, body, status, words", [
    ("nanshan1", "accept", {}, 404, "no case"),                  # not theirs: as if absent
    ("agent1", "accept", {}, 403, "may not"),
    ("disp1", "close", {}, 409, "cannot"),
    ("futian1", "return", {}, 422, "needs a note"),
    ("disp1", "fly", {}, 422, None),
    ("futian1", "request_extension", {"note": "x", "minutes": -5}, 422, None),
    ("futian1", "accept", {"note": "x", "surprise": 1}, 422, None),
])
def test_refusals_are_4xx_with_a_reason(client, people, who, action, body, status, words):
    n = client.post("/api/v1/cases", json=CASE, headers=people.auth("agent1")).json()["number"]
    r = client.post(f"/api/v1/cases/{n}/actions/{action}", json=body, headers=people.auth(who))
    assert r.status_code == status, r.text
    if words:
        assert words in r.json()["detail"]


@pytest.mark.parametrize("patch, words", [
    ({"category_key": "E9999"}, "unknown category"),
    ({"caller_phone": "not a number"}, "caller_phone"),
    ({"description": "长" * 2500}, "at most 2000"),
    ({"district_code": "440399"}, "not a district"),
    ({"description": "\x00\x01\x02"}, "description is empty"),
    ({"description": "<script>alert(1)</script>", "urgency": "很急"}, None),
    ({"street_code": "440305001"}, "does not lie within district_code 440304"),      # 南山's 街道 under 福田
    ({"street_code": "440304999"}, "not a division"),
    ({"district_code": None, "street_code": "440304001"}, "give the district_code"),
    ({"street_code": "440304001", "community_code": "440305001001"}, "does not lie within street_code"),
])
def test_bad_case_input_is_422_and_writes_nothing(client, people, patch, words):
    r = client.post("/api/v1/cases", json={**CASE, **patch}, headers=people.auth("agent1"))
    assert r.status_code == 422, r.text
    if words:
        assert words in str(r.json()["detail"])
    assert client.get("/api/v1/cases", headers=people.auth("super1")).json() == []


def test_hostile_text_is_stored_as_text(client, people):
    r = client.post("/api/v1/cases", json={**CASE, "description": "<script>alert(1)</script>'; DROP TABLE cases;--"},
                    headers=people.auth("agent1"))
    assert r.status_code == 201
    n = r.json()["number"]
    assert client.get(f"/api/v1/cases/{n}", headers=people.auth("agent1")).json()["description"].startswith("<script>")


def test_district_lists_only_its_cases_and_kpi_needs_a_supervisor(client, people):
    client.post("/api/v1/cases", json=CASE, headers=people.auth("agent1"))
    client.post("/api/v1/cases", json={**CASE, "district_code": "440305"}, headers=people.auth("agent1"))
    assert {c["district_code"] for c in client.get("/api/v1/cases", headers=people.auth("futian1")).json()} == {"440304"}
    assert len(client.get("/api/v1/cases", headers=people.auth("super1")).json()) == 2
    assert client.get("/api/v1/kpi?start=2026-11-01T00:00:00%2B08:00&end=2026-12-01T00:00:00%2B08:00",
                      headers=people.auth("agent1")).status_code == 403
    rows = client.get("/api/v1/kpi?start=2026-11-01T00:00:00%2B08:00&end=2026-12-01T00:00:00%2B08:00",
                      headers=people.auth("super1")).json()
    assert {r["group"]: r["filed"] for r in rows} == {"440304": 1, "440305": 1}


def test_the_agent_desk_can_ask_where_an_address_is(client, people):
    r = client.get("/api/v1/places/locate", params={"q": "大鹏新区南澳街道", "category_key": "E0102"},
                   headers=people.auth("agent1"))
    assert r.status_code == 200
    body = r.json()
    assert body["district_code"] == "440307" and body["street_code"] == "440307011"
    assert body["auto_route"] is True and body["route"]["unit"] == "dapeng"
    assert body["route"]["transfer"] == "queue:district-dapeng"
    vague = client.get("/api/v1/places/locate", params={"q": "深南大道"}, headers=people.auth("agent1")).json()
    assert vague["auto_route"] is False and {a["district_code"] for a in vague["alternatives"]} & {"440304", "440305"}
    point = client.get("/api/v1/places/locate", params={"lon": 114.0579, "lat": 22.5431},
                       headers=people.auth("disp1")).json()
    assert point["district_code"] == "440304"
    assert client.get("/api/v1/places/locate", params={"q": "x"}, headers=people.auth("futian1")).status_code == 403
    assert client.get("/api/v1/places/locate", params={"lon": 114.0}, headers=people.auth("agent1")).status_code == 422


def test_a_clients_confidence_does_not_dispatch_a_case(client, people):
    data = {k: v for k, v in CASE.items() if k != "place_confirmed"}
    r = client.post("/api/v1/cases", json={**data, "placement_confidence": 1.0}, headers=people.auth("agent1"))
    assert r.status_code == 201 and r.json()["state"] == "filed"      # waits for the dispatcher
    sure = client.post("/api/v1/cases", json={**data, "place_confirmed": True}, headers=people.auth("agent1"))
    assert sure.json()["state"] == "dispatched"


def test_a_dispatcher_relocates_a_case_through_the_api(client, people):
    body = {**CASE, "district_code": None, "place_confirmed": False, "address_text": "不知道在哪里"}
    made = client.post("/api/v1/cases", json=body, headers=people.auth("agent1")).json()
    assert made["state"] in ("intake", "filed") and "relocate" in made["allowed_actions"]
    moved = client.post(f"/api/v1/cases/{made['number']}/actions/relocate", headers=people.auth("disp1"),
                        json={"district_code": "440304", "address_text": "福田区福华路"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["timeline"][-1]["action"] == "relocate"
