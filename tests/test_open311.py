"""Open311 GeoReport v2 (/open311/v2) over the case core, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import prcoords
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent_ui import create_app
from case_bridge import CaseCore
from case_bridge.models import Case

BASE = "/open311/v2"
# A point in 福田区 (WGS-84, as an Open311 client sends it)
LAT, LON = 22.5431, 114.0579
SERVICE_KEYS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
REQUEST_KEYS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}


@pytest.fixture
def app(settings, db, core):
    app = create_app(settings, db)
    app.state.core = core  # the fake clock: cases are created at a known moment
    return app


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def key(people) -> str:
    return people.keys["agent1"]


def assert_spec_error(response, status: int) -> str:
    """The spec's error format: a list of {code, description}; returns the description."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert set(body[0]) == {"code", "description"}, body
    assert body[0]["code"] == status
    assert isinstance(body[0]["description"], str) and body[0]["description"]
    return body[0]["description"]


def post_request(client, key, **fields):
    form = {"api_key": key, "service_code": "C0101", "lat": str(LAT), "long": str(LON),
            "address_string": "深圳市福田区福华三路", "description": "井盖破损，有人差点掉下去",
            "attribute[request_type]": "投诉", "phone": "13800138000"}
    form.update(fields)
    form = {k: v for k, v in form.items() if v is not None}
    return client.post(f"{BASE}/requests.json", data=form)


def assert_created(response) -> str:
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == 1
    assert set(body[0]) == {"service_request_id", "service_notice", "account_id"}
    assert body[0]["service_request_id"] and body[0]["service_notice"]
    return body[0]["service_request_id"]


def get_requests(client, key, **params):
    return client.get(f"{BASE}/requests.json", params={"api_key": key, **params})


# ---------------------------------------------------------------- services
def test_services_list_has_every_category_with_the_spec_fields(client):
    r = client.get(f"{BASE}/services.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    services = r.json()
    assert len(services) == 144
    assert len({s["service_code"] for s in services}) == 144
    for s in services:
        assert set(s) >= SERVICE_KEYS
        assert isinstance(s["service_code"], str) and s["service_code"]
        assert isinstance(s["service_name"], str) and s["service_name"]
        assert s["type"] in ("realtime", "batch", "blackbox")
        assert isinstance(s["metadata"], bool)
        assert isinstance(s["keywords"], str) and isinstance(s["group"], str)
    c0101 = next(s for s in services if s["service_code"] == "C0101")
    assert c0101["service_name"] == "上水井盖"
    assert "自来水井盖" in c0101["keywords"].split(",")
    assert c0101["group"] == "部件-公用设施"


def test_service_definition_lists_its_attributes(client):
    r = client.get(f"{BASE}/services/C0101.json")
    assert r.status_code == 200
    d = r.json()
    assert d["service_code"] == "C0101"
    attrs = {a["code"]: a for a in d["attributes"]}
    assert set(attrs) == {"request_type", "urgency"}
    for a in d["attributes"]:
        assert set(a) >= {"variable", "code", "datatype", "required", "datatype_description", "order",
                          "description", "values"}
        assert a["datatype"] == "singlevaluelist"
        assert a["variable"] is True and isinstance(a["required"], bool)
        assert all(set(v) == {"key", "name"} for v in a["values"])
    assert sorted(a["order"] for a in d["attributes"]) == [1, 2]
    assert [v["key"] for v in attrs["request_type"]["values"]] == ["投诉", "建议", "求助", "咨询", "表扬"]
    assert [v["key"] for v in attrs["urgency"]["values"]] == ["一般", "紧急", "特急"]


def test_unknown_service_definition_is_a_spec_404(client):
    assert "X9999" in assert_spec_error(client.get(f"{BASE}/services/X9999.json"), 404)


# ---------------------------------------------------------------- POST requests.json
def test_post_creates_a_case_and_stores_the_point_in_gcj02(client, key, db):
    r = post_request(client, key)
    number = assert_created(r)
    assert r.json()[0]["account_id"] is None

    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        assert case.channel == "open311"
        assert case.category_key == "C0101"
        assert case.request_type == "投诉"
        assert case.address_text == "深圳市福田区福华三路"
        assert case.description == "井盖破损，有人差点掉下去"
        assert case.caller_phone == "+8613800138000"
        assert case.state == "intake"
        # stored converted: GCJ-02 lies a few hundred metres from the WGS-84 point in Shenzhen
        gcj = prcoords.wgs_gcj((LAT, LON))
        assert case.lat == pytest.approx(gcj.lat, abs=1e-9) and case.lon == pytest.approx(gcj.lon, abs=1e-9)
        assert abs(case.lat - LAT) + abs(case.lon - LON) > 1e-3

    got = client.get(f"{BASE}/requests/{number}.json", params={"api_key": key})
    assert got.status_code == 200
    (req,) = got.json()
    assert set(req) >= REQUEST_KEYS
    assert req["service_request_id"] == number
    assert req["lat"] == pytest.approx(LAT, abs=1e-5) and req["long"] == pytest.approx(LON, abs=1e-5)
    assert req["status"] == "open"
    assert req["status_notes"].startswith("受理")
    assert req["service_code"] == "C0101" and req["service_name"] == "上水井盖"
    assert req["address"] == "深圳市福田区福华三路"
    assert req["description"] == "井盖破损，有人差点掉下去"
    assert req["requested_datetime"].startswith("2026-11-23T01:00:00")
    datetime.fromisoformat(req["requested_datetime"])
    datetime.fromisoformat(req["updated_datetime"])


def test_post_with_attributes_and_name(client, key, db):
    number = assert_created(post_request(client, key, **{"attribute[request_type]": "求助", "attribute[urgency]": "紧急",
                                                     "first_name": "小明", "last_name": "王"}))
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        assert (case.request_type, case.urgency, case.caller_name) == ("求助", "紧急", "王 小明")


def test_post_with_an_address_only_is_accepted(client, key):
    number = assert_created(post_request(client, key, lat=None, long=None))
    (req,) = client.get(f"{BASE}/requests/{number}.json", params={"api_key": key}).json()
    assert req["lat"] is None and req["long"] is None
    assert req["address"] == "深圳市福田区福华三路"


def test_post_as_json_body(client, key):
    r = client.post(f"{BASE}/requests.json", json={"api_key": key, "service_code": "C0101", "lat": LAT,
                                                   "long": LON, "description": "JSON 提交"})
    assert_created(r)


@pytest.mark.parametrize("api_key", [None, "", "hk_not-a-key"])
def test_post_without_a_valid_key_is_a_spec_403(client, api_key):
    assert_spec_error(post_request(client, api_key), 403)


def test_post_with_a_revoked_key_is_refused(client, key, db):
    from hotline.accounts import ApiKey
    with db.session() as s:
        for row in s.scalars(select(ApiKey)):
            row.revoked_at = datetime.now(UTC)
    assert_spec_error(post_request(client, key), 403)


def test_post_without_service_code_is_a_400(client, key):
    assert "service_code" in assert_spec_error(post_request(client, key, service_code=None), 400)
    assert "service_code" in assert_spec_error(post_request(client, key, service_code=""), 400)


def test_post_with_an_unknown_service_code_is_a_400(client, key):
    assert_spec_error(post_request(client, key, service_code="X9999"), 400)


def test_post_without_a_location_is_a_400(client, key):
    assert_spec_error(post_request(client, key, lat=None, long=None, address_string=None), 400)


@pytest.mark.parametrize("lat,lon", [("abc", "114"), ("48.85", "2.35"), ("nan", "nan"), ("inf", "114")])
def test_post_with_a_bad_or_foreign_point_is_a_400(client, key, lat, lon):
    assert_spec_error(post_request(client, key, lat=lat, long=lon), 400)


def test_post_with_a_bad_phone_or_attribute_is_a_400(client, key):
    assert_spec_error(post_request(client, key, phone="not a phone"), 400)
    assert_spec_error(post_request(client, key, **{"attribute[request_type]": "抱怨"}), 400)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"'])
def test_post_with_a_malformed_json_body_is_a_400(client, body):
    r = client.post(f"{BASE}/requests.json", content=body, headers={"content-type": "application/json"})
    assert_spec_error(r, 400)


def test_nothing_is_stored_when_a_post_is_refused(client, key, db):
    post_request(client, None)
    post_request(client, key, service_code="X9999")
    with db.session() as s:
        assert s.scalar(select(Case)) is None


def test_idempotency_key_gives_the_same_request_back(client, key, db):
    first = post_request(client, key, idempotency_key="ext-42")
    number = assert_created(first)
    second = post_request(client, key, idempotency_key="ext-42")
    assert second.status_code == 200, second.text
    assert second.json()[0]["service_request_id"] == number
    changed = post_request(client, key, idempotency_key="ext-42", description="另一件事")
    assert changed.status_code == 400 and number in changed.text and "different request" in changed.text
    other = assert_created(post_request(client, key, idempotency_key="ext-43"))
    assert other != number
    with db.session() as s:
        assert len(s.scalars(select(Case)).all()) == 2


def test_idempotency_keys_are_per_client(client, people):
    """Two systems using the same key of their own do not get each other's requests."""
    a = assert_created(post_request(client, people.keys["agent1"], idempotency_key="1"))
    b = assert_created(post_request(client, people.keys["disp1"], idempotency_key="1"))
    assert a != b


# ---------------------------------------------------------------- GET requests
def test_reading_needs_a_key_unless_the_site_publishes(client, settings, db, clock, people):
    number = assert_created(post_request(client, people.keys["agent1"]))
    assert_spec_error(client.get(f"{BASE}/requests.json"), 403)
    assert_spec_error(client.get(f"{BASE}/requests.json", params={"api_key": "wrong"}), 403)
    assert_spec_error(client.get(f"{BASE}/requests/{number}.json"), 403)

    published = settings.model_copy(update={"open311_public_read": True})
    public = create_app(published, db)
    public.state.core = CaseCore(published, now=clock)
    with TestClient(public) as anon:
        assert [r["service_request_id"] for r in anon.get(f"{BASE}/requests.json").json()] == [number]
        assert anon.get(f"{BASE}/requests/{number}.json").status_code == 200


def test_unknown_request_is_a_spec_404(client, key):
    assert_spec_error(client.get(f"{BASE}/requests/C010120261123999.json", params={"api_key": key}), 404)


def test_query_by_ids_and_by_service_code(client, key):
    a = assert_created(post_request(client, key, service_code="C0101"))
    b = assert_created(post_request(client, key, service_code="C0101", description="另一个井盖"))
    c = assert_created(post_request(client, key, service_code="C0102"))

    ids = lambda r: [x["service_request_id"] for x in r.json()]
    r = get_requests(client, key)
    assert r.status_code == 200
    assert sorted(ids(r)) == sorted([a, b, c])
    assert all(set(x) >= REQUEST_KEYS for x in r.json())

    assert sorted(ids(get_requests(client, key, service_request_id=f"{a}, {c}"))) == sorted([a, c])
    assert ids(get_requests(client, key, service_request_id="nope")) == []
    assert sorted(ids(get_requests(client, key, service_code="C0101"))) == sorted([a, b])
    assert ids(get_requests(client, key, service_code="C0102")) == [c]
    assert sorted(ids(get_requests(client, key, service_code="C0101,C0102"))) == sorted([a, b, c])
    assert ids(get_requests(client, key, service_code="E0101")) == []


def test_query_by_date(client, key, clock):
    early = assert_created(post_request(client, key))
    clock.advance(days=2)
    late = assert_created(post_request(client, key))

    ids = lambda **p: sorted(x["service_request_id"] for x in get_requests(client, key, **p).json())
    assert ids(start_date="2026-11-24T00:00:00+08:00") == [late]
    assert ids(start_date="2026-11-24T00:00:00Z") == [late]
    assert ids(end_date="2026-11-24T00:00:00+08:00") == [early]
    assert ids(start_date="2026-11-22T00:00:00+08:00", end_date="2026-11-30T00:00:00+08:00") == sorted([early, late])
    assert ids(start_date="2026-11-26T00:00:00+08:00") == []
    # no zone: taken as UTC
    assert ids(start_date="2026-11-23T02:00:00") == [late]


@pytest.mark.parametrize("params", [{"start_date": "yesterday"}, {"end_date": "2026-13-45"},
                                    {"start_date": "2026-11-25T00:00:00Z", "end_date": "2026-11-24T00:00:00Z"},
                                    {"status": "pending"},
                                    # valid dates whose UTC form falls outside the years 1-9999
                                    {"start_date": "0001-01-01T00:00:00+01:00"},
                                    {"end_date": "9999-12-31T23:59:59-01:00"}])
def test_bad_query_is_a_spec_400(client, key, params):
    assert_spec_error(get_requests(client, key, **params), 400)


@pytest.mark.parametrize("method,url,fields", [
    ("GET", "/requests.json", {"service_request_id": "C0101\x00"}),
    ("GET", "/requests.json", {"service_code": "C0101\x00"}),
    ("GET", "/requests/C0101%00.json", {}),
    ("POST", "/requests.json", {"service_code": "C0101", "address_string": "福华三路", "description": "x",
                                "idempotency_key": "ext\x0042"}),
], ids=["ids", "service_code", "path", "idempotency_key"])
def test_nul_characters_are_a_client_error_not_a_crash(app, key, method, url, fields):
    """PostgreSQL text cannot hold NUL (0x00); such input must be refused, not crash the driver."""
    fields = {**fields, "api_key": key}
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.request(method, BASE + url, **({"params": fields} if method == "GET" else {"data": fields}))
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_spec_error(r, r.status_code)


def test_default_window_is_the_last_90_days_by_the_core_clock(client, key, clock):
    """Without dates the list covers 90 days before *now* — the same clock that stamps cases."""
    old = assert_created(post_request(client, key))
    clock.advance(days=120)
    new = assert_created(post_request(client, key))
    assert [x["service_request_id"] for x in get_requests(client, key).json()] == [new]
    # with explicit dates both are there
    both = get_requests(client, key, start_date="2026-01-01T00:00:00Z").json()
    assert sorted(x["service_request_id"] for x in both) == sorted([old, new])


def act(client, people, number, who, action, **params):
    r = client.post(f"/api/v1/cases/{number}/actions/{action}", json=params, headers=people.auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def test_status_follows_the_case_to_closed_with_the_result_in_status_notes(client, key, people):
    number = assert_created(post_request(client, key))
    other = assert_created(post_request(client, key, service_code="C0102"))

    def one():
        (req,) = client.get(f"{BASE}/requests/{number}.json", params={"api_key": key}).json()
        return req

    assert one()["status"] == "open"
    act(client, people, number, "agent1", "file")
    assert (one()["status"], one()["status_notes"]) == ("open", "立案")
    act(client, people, number, "disp1", "dispatch", unit_code="440304")
    req = one()
    assert req["status"] == "open" and req["status_notes"] == "派遣"
    assert req["agency_responsible"] == "福田区城市管理指挥中心"
    assert req["expected_datetime"] is not None
    act(client, people, number, "futian1", "accept")
    act(client, people, number, "futian1", "report_result", note="已更换井盖并设置警示")
    req = one()
    assert req["status"] == "open" and req["status_notes"] == "已反馈：已更换井盖并设置警示"
    act(client, people, number, "agent1", "verify")
    out = act(client, people, number, "disp1", "close")
    assert out["state"] == "closed"

    req = one()
    assert req["status"] == "closed"
    assert req["status_notes"].startswith("结案")
    assert "已更换井盖并设置警示" in req["status_notes"]

    ids = lambda **p: [x["service_request_id"] for x in get_requests(client, key, **p).json()]
    assert ids(status="closed") == [number]
    assert ids(status="open") == [other]
    assert sorted(ids(status="open,closed")) == sorted([number, other])


def test_void_counts_as_closed_with_its_reason(client, key, people):
    number = assert_created(post_request(client, key))
    act(client, people, number, "disp1", "void", note="重复来电")
    (req,) = client.get(f"{BASE}/requests/{number}.json", params={"api_key": key}).json()
    assert req["status"] == "closed"
    assert req["status_notes"] == "作废：重复来电"


def test_open311_cases_are_visible_in_the_json_api(client, key, people):
    number = assert_created(post_request(client, key))
    r = client.get(f"/api/v1/cases/{number}", headers=people.auth("super1"))
    assert r.status_code == 200
    body = r.json()
    assert body["channel"] == "open311" and body["state"] == "intake"
    assert json.dumps(body, ensure_ascii=False)  # serialisable
    assert body["timeline"][0]["actor"] == "agent1"


def test_dates_in_answers_are_w3c(client, key):
    assert_created(post_request(client, key))
    (req,) = get_requests(client, key).json()
    for field in ("requested_datetime", "updated_datetime"):
        value = datetime.fromisoformat(req[field])
        assert value.tzinfo is not None and value.utcoffset() is not None
    assert datetime.fromisoformat(req["requested_datetime"]) == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert timedelta(0) <= (datetime.fromisoformat(req["updated_datetime"])
                            - datetime.fromisoformat(req["requested_datetime"]))


def test_no_key_is_403_before_any_other_check(settings, db, people):
    from fastapi.testclient import TestClient
    from agent_ui import create_app
    client = TestClient(create_app(settings, db))
    r = client.post("/open311/v2/requests.json", data={"description": "no location, no key"})
    assert r.status_code == 403 and r.json()[0]["code"] == 403
    r = client.post("/open311/v2/requests.json", data={"api_key": people.keys["agent1"], "service_code": "E0102",
                                                      "address_string": "福田区", "idempotency_key": "k" * 65})
    assert r.status_code == 400 and "at most 64" in r.json()[0]["description"] and "open311:" not in r.text


# ------------------------------------------------------------------ authorization, as everywhere else

def client_key(db, name: str = "gov-app") -> str:
    from hotline.accounts import User, hash_password, issue_api_key
    with db.session() as s:
        user = User(username=name, role="client", password_hash=hash_password("client-password-1"))
        s.add(user)
        s.flush()
        return issue_api_key(s, user, "open311")


def test_a_district_key_reads_only_its_own_cases_like_the_json_api(client, key, people):
    futian = post_request(client, key).json()[0]["service_request_id"]          # a point in 福田区
    nanshan_key = people.keys["nanshan1"]
    one = client.get(f"{BASE}/requests/{futian}.json", params={"api_key": nanshan_key})
    assert_spec_error(one, 404)
    assert client.get(f"/api/v1/cases/{futian}", headers=people.auth("nanshan1")).status_code == 404
    listed = client.get(f"{BASE}/requests.json", params={"api_key": nanshan_key})
    assert listed.status_code == 200 and listed.json() == []
    own = client.get(f"{BASE}/requests.json", params={"api_key": people.keys["futian1"]}).json()
    assert [r["service_request_id"] for r in own] == [futian]


@pytest.mark.parametrize("who", ["futian1", "admin1"])
def test_district_and_admin_keys_cannot_submit_requests(client, people, db, who):
    assert_spec_error(post_request(client, people.keys[who]), 403)
    with db.session() as s:
        assert s.scalars(select(Case)).all() == []


def test_a_client_sees_what_it_submitted_and_nothing_else(client, key, db):
    other = post_request(client, key).json()[0]["service_request_id"]            # by an agent
    app_key = client_key(db)
    mine = post_request(client, app_key, description="路灯不亮")
    assert mine.status_code == 201
    number = mine.json()[0]["service_request_id"]
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json", params={"api_key": app_key}).json()] \
        == [number]
    assert_spec_error(client.get(f"{BASE}/requests/{other}.json", params={"api_key": app_key}), 404)
    assert client.get(f"{BASE}/requests/{number}.json", params={"api_key": app_key}).status_code == 200


def test_the_key_may_come_in_a_header_so_it_stays_out_of_urls(client, key):
    number = post_request(client, key).json()[0]["service_request_id"]
    r = client.get(f"{BASE}/requests/{number}.json", headers={"X-Api-Key": key})
    assert r.status_code == 200 and r.json()[0]["service_request_id"] == number
    assert_spec_error(client.get(f"{BASE}/requests/{number}.json", headers={"X-Api-Key": "hk_wrong"}), 403)
