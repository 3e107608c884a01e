"""Property-based fuzzing of the JSON API (/api/v1) from our own OpenAPI document (schemathesis).

The fuzz runs on one SQLite database built at import: migrated, seeded with the units,
one user per role and a handful of cases (so generated case numbers and link ids can hit
real rows). Each operation is fuzzed as a supervisor, an agent, a dispatcher and a district
user; every answer must not be a server error and must conform to the documented responses
(status code, content type, body schema). Runs are derandomised (the same inputs every run);
set FUZZ_EXAMPLES=1000 for a deeper run than the default.

The inputs the fuzz found to crash the API are kept below as plain regression tests,
run on SQLite and PostgreSQL.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent_ui import create_app
from case_bridge import CaseCore, NewCase, seed_units
from hotline.accounts import Actor, add_user, issue_api_key
from hotline.db import Database
from hotline.migrate import upgrade
from hotline.settings import load_settings

FUZZ_ROLES = [("super1", "supervisor", None), ("agent1", "agent", None), ("futian1", "district", "440304"),
              ("disp1", "dispatcher", None), ("client1", "client", None)]
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
TMP = Path(tempfile.mkdtemp(prefix="hotline-fuzz-"))


def _build_fuzz_app():
    """A migrated SQLite database with units, users and a few cases, and the app over it."""
    url = f"sqlite:///{TMP / 'fuzz.db'}"
    upgrade(url)
    settings = load_settings(database_url=url, data_dir=TMP / "var")
    db = Database(url)
    core = CaseCore(settings)
    keys: dict[str, str] = {}
    numbers: list[str] = []
    with db.session() as s:
        seed_units(s)
        actors = {}
        for username, role, unit in FUZZ_ROLES:
            user = add_user(s, username, role, "correct-horse-battery", unit_code=unit)
            actors[username] = Actor.of(user)
            keys[username] = issue_api_key(s, user, "fuzz")
        # an auto-dispatched case and a repeat of it (a suggested link to dismiss), one in another
        # district, a consultation answered at intake (closed) and one not yet filed
        for data in (
            NewCase(category_key="C0101", description="井盖破损", district_code="440304", lat=22.54, lon=114.06,
                    place_confirmed=True),
            NewCase(category_key="C0101", description="井盖又坏了", district_code="440304", lat=22.54, lon=114.06,
                    caller_phone="13800138000"),
            NewCase(category_key="E0101", description="噪音扰民", district_code="440305"),
            NewCase(request_type="咨询", description="办事指南", answer="已当场答复"),
            NewCase(category_key="C0102", description="未立案", file=False),
        ):
            numbers.append(core.create_case(s, data, actors["agent1"]).case.number)
    app = create_app(settings, db)
    return app, db, keys, numbers


APP, DB, KEYS, NUMBERS = _build_fuzz_app()


def teardown_module() -> None:
    DB.dispose()
    shutil.rmtree(TMP, ignore_errors=True)

schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/api/v1/")


open311 = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=r"^/open311/")


def aim_at_real_cases(context, path_parameters):
    """Half the time, aim at a case that exists (otherwise nearly every call would be a 404)."""
    name = next((n for n in ("number", "service_request_id") if n in (path_parameters or {})), None)
    if name is None:
        return st.just(path_parameters)
    real = st.sampled_from(NUMBERS).map(lambda n: {**path_parameters, name: n})
    return st.one_of(st.just(path_parameters), real)


schema.hook("flatmap_path_parameters")(aim_at_real_cases)
open311.hook("flatmap_path_parameters")(aim_at_real_cases)


def no_server_error(ctx, response, case):
    """A 5xx is a defect, except the documented 503 of call control in a process without a PBX link."""
    if response.status_code == 503 and "/telephony/" in case.path:
        assert "no link to the PBX" in response.text
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)


def assert_conforms(case, username: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEYS[username]}"}, checks=CHECKS)


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_supervisor(case):
    assert_conforms(case, "super1")


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_agent(case):
    assert_conforms(case, "agent1")


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_dispatcher(case):
    assert_conforms(case, "disp1")


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_as_district(case):
    assert_conforms(case, "futian1")


# Open311 as the keys that see least: a district sees its own unit's cases, a client what it submitted
def _outside_futian() -> set[str]:
    from sqlalchemy import select

    from case_bridge.models import Case
    with DB.session() as s:
        return set(s.scalars(select(Case.number).where(Case.number.in_(NUMBERS),
                                                       Case.handling_unit_code.is_distinct_from("440304"))))


OUT_OF_SCOPE = {"futian1": _outside_futian(), "client1": set(NUMBERS)}   # the client submitted none of them


def out_of_scope_cases_are_never_shown(username: str):
    def check(ctx, response, case) -> None:
        if response.status_code >= 300:   # a refusal may echo the id asked for, as for one that does not exist
            return
        shown = {n for n in NUMBERS if n in response.text}
        assert not shown & OUT_OF_SCOPE[username], f"{username} was shown {sorted(shown & OUT_OF_SCOPE[username])}"
    return check


def assert_open311_scoped(case, username: str) -> None:
    case.call_and_validate(headers={"X-Api-Key": KEYS[username]},
                           checks=[not_a_server_error, out_of_scope_cases_are_never_shown(username)])


@open311.parametrize()
@FUZZ_SETTINGS
def test_open311_as_district(case):
    assert_open311_scoped(case, "futian1")


@open311.parametrize()
@FUZZ_SETTINGS
def test_open311_as_client(case):
    assert_open311_scoped(case, "client1")


def test_the_fuzz_covers_every_api_operation():
    ops = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert ops == {
        ("POST", "/api/v1/cases"), ("GET", "/api/v1/cases"), ("GET", "/api/v1/cases/{number}"),
        ("POST", "/api/v1/cases/{number}/actions/{action}"), ("POST", "/api/v1/cases/{number}/links/{link_id}/dismiss"),
        ("GET", "/api/v1/categories"), ("GET", "/api/v1/units"), ("GET", "/api/v1/kpi"),
        ("GET", "/api/v1/places/locate"), ("GET", "/api/v1/telephony"),
        ("GET", "/api/v1/sms/inbox"), ("GET", "/api/v1/sms/status"), ("POST", "/api/v1/sms/inbox/{item_id}/case"),
        ("POST", "/api/v1/sms/inbox/{item_id}/merge/{number}"),
        ("GET", "/api/v1/voicemail"), ("GET", "/api/v1/voicemail/{uniqueid}/audio"),
        ("POST", "/api/v1/voicemail/{uniqueid}/case"), ("POST", "/api/v1/voicemail/{uniqueid}/merge/{number}"),
        ("POST", "/api/v1/voicemail/{uniqueid}/dismiss"),
        ("POST", "/api/v1/telephony/calls/{uniqueid}/transfer"), ("POST", "/api/v1/telephony/agents/{extension}/pause"),
    }
    assert {(op.ok().method.upper(), op.ok().path) for op in open311.get_all_operations()} == {
        ("GET", "/open311/v2/services.json"), ("GET", "/open311/v2/services/{service_code}.json"),
        ("POST", "/open311/v2/requests.json"), ("GET", "/open311/v2/requests.json"),
        ("GET", "/open311/v2/requests/{service_request_id}.json"),
    }


# ------------------------------------------------------------------ what the fuzz found, on both backends
@pytest.fixture
def client(settings, db, core):
    app = create_app(settings, db)
    app.state.core = core
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def filed(client, people) -> str:
    r = client.post("/api/v1/cases", headers=people.auth("agent1"),
                    json={"category_key": "C0101", "description": "井盖破损", "district_code": "440304"})
    assert r.status_code == 201, r.text
    return r.json()["number"]


@pytest.mark.parametrize("start,end", [("0001-01-01T00:00:00+01:00", "2026-01-01T00:00:00Z"),
                                       ("2026-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00")])
def test_kpi_dates_beyond_the_utc_range_are_a_422(client, people, start, end):
    """Valid date-times whose UTC form falls outside the years 1-9999 cannot be stored or compared."""
    r = client.get("/api/v1/kpi", params={"start": start, "end": end}, headers=people.auth("super1"))
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("link_id", [2**31, 2**40, 2**63, 2**70])
def test_a_link_id_beyond_the_integer_column_is_a_client_error(client, people, filed, link_id):
    r = client.post(f"/api/v1/cases/{filed}/links/{link_id}/dismiss", headers=people.auth("disp1"))
    assert r.status_code in (404, 422), r.text


@pytest.mark.parametrize("method,path,kw", [
    ("GET", "/api/v1/cases/C0101%00", {}),
    ("GET", "/api/v1/cases", {"params": {"state": "filed\x00"}}),
    ("GET", "/api/v1/cases", {"params": {"unit_code": "440304\x00"}}),
    ("POST", "/api/v1/cases", {"json": {"category_key": "C0101", "description": "x", "idempotency_key": "k\x00"}}),
    ("POST", "/api/v1/cases/{n}/actions/dispatch", {"json": {"unit_code": "440304\x00"}}),
    ("POST", "/api/v1/cases/{n}/actions/void", {"json": {"note": "重复", "duplicate_of": "C0101\x00"}}),
    ("POST", "/api/v1/cases/C0101%00/actions/void", {"json": {"note": "重复"}}),
], ids=["case-path", "state", "unit_code", "idempotency_key", "dispatch-unit", "duplicate_of", "action-path"])
def test_nul_characters_are_a_client_error_not_a_crash(client, people, filed, method, path, kw):
    """PostgreSQL text cannot hold NUL (0x00): such input must be refused (4xx), not crash the driver (500)."""
    r = client.request(method, path.replace("{n}", filed), headers=people.auth("super1"), **kw)
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("body", [b"{not json", b'{"description": "\xc3\x28"}'], ids=["bad-json", "not-utf8"])
def test_a_body_that_is_not_json_gets_a_documented_status(client, people, filed, body):
    """FastAPI answers 422 to bad JSON and 400 to bytes it cannot decode; the OpenAPI document must list both."""
    spec = client.get("/openapi.json").json()["paths"]
    for path, op in (("/api/v1/cases", "/api/v1/cases"),
                     (f"/api/v1/cases/{filed}/actions/file", "/api/v1/cases/{number}/actions/{action}")):
        r = client.post(path, content=body, headers={**people.auth("super1"), "content-type": "application/json"})
        assert r.status_code in (400, 422), r.text
        assert str(r.status_code) in spec[op]["post"]["responses"], (path, r.status_code, r.text)
