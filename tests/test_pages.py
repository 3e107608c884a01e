"""The pages' rules, through HTTP: sessions (idle timeout on the product clock, sign-out everywhere,
rotation), CSRF on every unsafe request, role scope, recordings only to those allowed, no open
redirect, no cross-site WebSocket."""
from __future__ import annotations

import re
import wave
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent_ui import create_app
from agent_ui.models import AgentState, SignInEvent
from case_bridge import NewCase
from ivr import record_call
from tests.conftest import PASSWORD


@pytest.fixture
def app(settings, db, core, people, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    s = settings.model_copy(update={"asterisk_spool_dir": spool, "signin_delay_seconds": 0.0})
    return create_app(s, db=db, core=core)


def signed_in(app, username: str, extension: str = "") -> tuple[TestClient, str]:
    client = TestClient(app)
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token,
                                    "extension": extension}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    return client, csrf


def a_case(app, core, people, **fields):
    with app.state.db.session() as s:
        data = {"description": "井盖丢失", "category_key": "C0114", "district_code": "440304", "place_confirmed": True,
                "address_text": "福田区深南中路", "caller_phone": "13800138000", **fields}
        return core.create_case(s, NewCase(**data), people["agent1"]).case.number


def test_signed_out_visitors_see_no_page_and_no_figures(app):
    client = TestClient(app)
    for path in ("/", "/desk", "/cases", "/sms"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert client.post("/desk/case", data={"description": "x"}).status_code == 401
    assert "案件概况" not in client.get("/login").text


def test_a_session_ends_after_the_idle_time_and_everywhere_on_request(app, clock):
    client, csrf = signed_in(app, "agent1", "1001")
    other, _ = signed_in(app, "agent1")
    clock.advance(minutes=29)
    assert client.get("/cases").status_code == 200
    clock.advance(minutes=29)   # the request before counted as activity: still alive
    assert client.get("/cases", follow_redirects=False).status_code == 200
    clock.advance(minutes=31)
    assert client.get("/cases", follow_redirects=False).status_code == 303   # idle too long
    client, csrf = signed_in(app, "agent1")
    r = client.post("/logout", data={"csrf_token": csrf, "everywhere": "1"}, follow_redirects=False)
    assert r.status_code == 303
    assert other.get("/cases", follow_redirects=False).status_code == 303   # the other device too
    with app.state.db.read_session() as s:
        outcomes = list(s.scalars(select(SignInEvent.outcome).order_by(SignInEvent.id)))
    assert outcomes.count("ok") == 3 and outcomes[-1] == "signed_out"


def test_the_session_token_is_new_at_every_sign_in(app):
    client, _ = signed_in(app, "agent1")
    first = client.cookies.get("hotline_session")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"username": "agent1", "password": PASSWORD, "csrf_token": token})
    assert client.cookies.get("hotline_session") != first
    stale = TestClient(app, cookies={"hotline_session": first})
    assert stale.get("/cases", follow_redirects=False).status_code == 303


def test_unsafe_requests_need_the_csrf_token(app, core, people):
    number = a_case(app, core, people)
    client, csrf = signed_in(app, "disp1")
    r = client.post(f"/cases/{number}/actions/urge", data={"note": "请尽快"})
    assert r.status_code == 403
    r = client.post(f"/cases/{number}/actions/urge", data={"note": "请尽快", "csrf_token": "forged"})
    assert r.status_code == 403
    with app.state.db.read_session() as s:
        assert [e.action for e in core.to_out(s, core.get_case(s, number, people["disp1"]), people["disp1"]).timeline
                ].count("urge") == 0
    r = client.post(f"/cases/{number}/actions/urge", data={"note": "请尽快"}, headers={"X-CSRF-Token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303


def test_another_districts_case_is_not_found_and_cannot_be_acted_on(app, core, people):
    number = a_case(app, core, people)   # 福田 (440304)
    client, csrf = signed_in(app, "nanshan1")
    assert client.get(f"/cases/{number}").status_code == 404
    assert client.get("/cases/E9999999999999999").status_code == 404
    r = client.post(f"/cases/{number}/actions/accept", data={"note": ""}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404
    assert number not in client.get("/cases").text
    futian, _ = signed_in(app, "futian1")
    assert futian.get(f"/cases/{number}").status_code == 200


def test_a_refused_action_says_why(app, core, people):
    number = a_case(app, core, people)
    client, csrf = signed_in(app, "agent1")
    r = client.post(f"/cases/{number}/actions/close", data={"note": "x"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and "结案未执行" in r.text


def test_recordings_only_for_supervisors_and_the_agent_who_took_the_call(app, core, people, clock, tmp_path):
    number = a_case(app, core, people, call_uniqueid="hotline1-1.1")
    spool = app.state.settings.asterisk_spool_dir
    (spool / "2026").mkdir()
    with wave.open(str(spool / "2026" / "rec.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 800)
    now = clock()
    with app.state.db.session() as s:
        record_call(s, "hotline1-1.1", caller="+8613800138000", agent="PJSIP/1001", started_at=now, answered_at=now,
                    recording_path="2026/rec.wav")
        s.add(AgentState(user_id=people["agent1"].user_id, extension="1001", state="ready",
                         started_at=now - timedelta(minutes=5)))
    url = f"/cases/{number}/calls/hotline1-1.1/recording"
    supervisor, _ = signed_in(app, "super1")
    assert supervisor.get(url).status_code == 200
    agent, _ = signed_in(app, "agent1")
    assert agent.get(url).status_code == 200 and "<audio" in agent.get(f"/cases/{number}").text
    dispatcher, _ = signed_in(app, "disp1")
    assert dispatcher.get(url).status_code == 403
    assert "<audio" not in dispatcher.get(f"/cases/{number}").text
    with app.state.db.session() as s:   # a stored path that leaves the spool is never served
        record_call(s, "hotline1-1.1", recording_path="../../etc/passwd")
    assert supervisor.get(url).status_code == 404


def test_no_open_redirect_after_sign_in(app):
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"username": "disp1", "password": PASSWORD, "csrf_token": token,
                                    "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/cases"


def test_the_websocket_refuses_other_sites_and_strangers(app):
    client, _ = signed_in(app, "agent1")
    from starlette.websockets import WebSocketDisconnect
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_text()
    with pytest.raises(WebSocketDisconnect):
        with TestClient(app).websocket_connect("/ws") as ws:
            ws.receive_text()
    with client.websocket_connect("/ws?page=desk", headers={"origin": "http://testserver"}) as ws:
        ws.send_text("echo:1")
        assert ws.receive_text() == "echo:1"


def test_hostile_text_is_shown_as_text(app, core, people):
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    number = a_case(app, core, people, description=hostile, address_text=hostile[:100])
    client, _ = signed_in(app, "agent1")
    page = client.get(f"/cases/{number}").text
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'self'" in client.get(f"/cases/{number}").headers["content-security-policy"]
    found = client.get("/cases", params={"q": hostile[:20]}).text
    assert "<script>alert(1)" not in found
