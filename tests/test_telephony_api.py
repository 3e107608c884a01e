"""Live-call control from the JSON API, against the Asterisk side of AMI: moving a caller to a district's
queue, and pausing an agent's phone (kept for after a reconnect when the link is down)."""
from __future__ import annotations

import httpx
import pytest

from agent_ui import create_app
from hotline.bus import InProcessBus
from ivr import Telephony
from tests.support.fake_ami import FakeAMI
from tests.support.waiting import until


@pytest.fixture
async def pbx():
    fake = await FakeAMI.start(auth_delay=0.1)
    fake.queues = {"city": {"members": [{"Interface": "PJSIP/1001", "Name": "1001", "Status": "1"}]}}
    yield fake
    await fake.stop()


@pytest.fixture
async def api(settings, db, people, pbx):
    settings.ami_port, settings.ami_secret, settings.agi_port = pbx.port, "hotline-secret", 0
    bus = InProcessBus()
    service = Telephony(settings, db, bus, agi=False)
    await service.start()
    app = create_app(settings, db=db, bus=bus)
    app.state.telephony = service
    await until(lambda: service.ami.status == "connected", what="AMI")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        http.service = service
        yield http
    await service.stop()


async def test_an_agent_moves_a_live_caller_to_the_district_queue(api, pbx, people):
    pbx.add_channel("PJSIP/trunk-00000007", Uniqueid="5.7", Linkedid="5.7", CallerIDNum="13800138000")
    await api.service.ami.resync()
    moved = await api.post("/api/v1/telephony/calls/5.7/transfer", json={"district_code": "440304"},
                           headers=people.auth("agent1"))
    assert moved.status_code == 200 and moved.json()["queue"] == "district-440304"
    redirect = [a for a in pbx.actions if a["Action"] == "Redirect"][-1]
    assert (redirect["Channel"], redirect["Exten"]) == ("PJSIP/trunk-00000007", "district-440304")
    gone = await api.post("/api/v1/telephony/calls/9.9/transfer", json={"district_code": "440304"},
                          headers=people.auth("agent1"))
    assert gone.status_code == 409 and "no live call" in gone.json()["detail"]
    refused = await api.post("/api/v1/telephony/calls/5.7/transfer", json={"district_code": "440304"},
                             headers=people.auth("futian1"))
    assert refused.status_code == 403


async def test_pausing_an_agent_phone_and_the_wish_kept_while_the_link_is_down(api, pbx, people):
    paused = await api.post("/api/v1/telephony/agents/1001/pause", json={"paused": True, "reason": "培训"},
                            headers=people.auth("agent1"))
    assert paused.status_code == 200 and paused.json()["kept"] is False
    sent = [a for a in pbx.actions if a["Action"] == "QueuePause"][-1]
    assert (sent["Interface"], sent["Paused"], sent["Reason"]) == ("PJSIP/1001", "true", "培训")
    assert (await api.post("/api/v1/telephony/agents/7777/pause", json={"paused": True},
                           headers=people.auth("agent1"))).status_code == 404
    assert (await api.post("/api/v1/telephony/agents/1001/pause", json={"paused": True},
                           headers=people.auth("disp1"))).status_code == 403
    await pbx.stop()
    await until(lambda: api.service.ami.status != "connected", what="link down")
    kept = await api.post("/api/v1/telephony/agents/1001/pause", json={"paused": False},
                          headers=people.auth("super1"))
    assert kept.status_code == 200 and kept.json()["kept"] is True


async def test_without_a_pbx_link_call_control_says_so(settings, db, people):
    app = create_app(settings, db=db, bus=InProcessBus())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/api/v1/telephony/calls/5.7/transfer", json={"district_code": "440304"},
                            headers=people.auth("agent1"))
    assert r.status_code == 503 and "hotline run" in r.json()["detail"]
