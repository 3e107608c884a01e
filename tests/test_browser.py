"""The browser pages driven in Debian's headless Chromium (Playwright), against the product started
as `hotline run` starts it, with the fake AMI and the fake SMSC as its PBX and SMS centre.

Screenshots of each page (1366×768) are written to $BROWSER_SCREENSHOTS (default: the test's tmp dir)."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from case_bridge import CaseCore, NewCase, OutboxItem
from hotline.accounts import add_user
from hotline.db import Database
from hotline.migrate import upgrade
from hotline.settings import load_settings
from tests.support.fake_ami import FakeAMI
from tests.support.smsc import FakeSMSC

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
              pytest.mark.timeout(240)]
PASSWORD = "browser-pass-1"
CALLER = "13800138000"
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u202eevil'


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peers:
    """The fake AMI and SMSC on an event loop of their own thread; the test calls them through it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ami: FakeAMI = self.run(FakeAMI.start(secret="browser-secret", auth_delay=0.1))
        self.ami.queues = {"city": {"members": []}}
        self.smsc: FakeSMSC = self.run(FakeSMSC.start())

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        for peer in (self.ami, self.smsc):
            try:
                self.run(peer.stop(), 10)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser")
    peers = Peers()
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")},
           "HOTLINE_DATA_DIR": str(home / "var"), "HOTLINE_WEB_PORT": str(port), "HOTLINE_AGI_PORT": str(free_port()),
           "HOTLINE_AMI_PORT": str(peers.ami.port), "HOTLINE_AMI_SECRET": "browser-secret",
           "HOTLINE_SMPP_PORT": str(peers.smsc.port), "HOTLINE_OUTBOX_POLL_SECONDS": "0.5",
           "HOTLINE_SIGNIN_DELAY_SECONDS": "0.05", "HOTLINE_QUEUE_WRAPUP_SECONDS": "2"}
    settings = load_settings(data_dir=home / "var")
    (home / "var").mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    with db.session() as s:
        from case_bridge import seed_units
        seed_units(s)
        for name, role, unit in (("agent1", "agent", None), ("disp1", "dispatcher", None),
                                 ("nanshan1", "district", "440305"), ("super1", "supervisor", None)):
            add_user(s, name, role, PASSWORD, display_name=f"测试{name}", unit_code=unit)
    core = CaseCore(settings)
    with db.session() as s:   # the caller's earlier case, in 福田 (not 南山's)
        earlier = core.create_case(s, NewCase(description="路灯不亮已三天", caller_phone=CALLER, category_key="C0301"
                                              if "C0301" in core.catalogue else None,
                                              address_text="福田区华强北路赛格广场")).case.number
    proc = subprocess.Popen([sys.executable, "-m", "hotline.cli", "run"], env=env, cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass   # not listening yet
            assert time.monotonic() < deadline and proc.poll() is None, "hotline run did not come up"
            time.sleep(0.3)
        peers.run(peers.ami.wait_until(lambda: peers.ami.connected >= 1, 20, "the product's AMI login"))
        yield {"base": base, "peers": peers, "db": db, "earlier": earlier, "shots": Path(
            os.environ.get("BROWSER_SCREENSHOTS") or home / "shots"), "core": core}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        peers.stop()
        db.dispose()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def page_of(browser, product):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN", base_url=product["base"])
    return context.new_page()


def sign_in(page, username: str, extension: str = "") -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    if extension:
        page.select_option("#extension", extension)
    page.click("button[type=submit]")


def shot(page, product, name: str) -> None:
    product["shots"].mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(product["shots"] / f"{name}.png"))


def test_agent_takes_a_call_makes_a_case_and_transfers_it(browser, product):
    peers, ami = product["peers"], product["peers"].ami
    page = page_of(browser, product)
    sign_in(page, "agent1", "1001")
    page.wait_for_url("**/desk")
    shot(page, product, "desk-signed-in")
    page.wait_for_selector("#live-status.on")
    page.click("#btn-ready")
    add = peers.run(ami.wait_action("QueueAdd"))
    assert add["Interface"] == "PJSIP/1001" and add["Queue"] == "city"
    page.wait_for_selector(".state-ready")
    page.select_option("#pause-reason", "培训")
    page.click("#btn-pause")
    pause = peers.run(ami.wait_action("QueuePause", where=lambda a: a.get("Paused") == "true"))
    assert pause["Reason"] == "培训" and pause["Interface"] == "PJSIP/1001"
    page.wait_for_selector(".state-paused")
    page.click("#btn-ready")
    peers.run(ami.wait_action("QueuePause", count=2, where=lambda a: a.get("Paused") == "false"))

    # a caller reaches this agent: the PBX tells the product, the pop shows the caller's history
    uid = "hotline1-1795240700.41"
    channel = "PJSIP/trunk-00000029"
    ami.add_channel(channel, Uniqueid=uid, CallerIDNum=CALLER, Context="hotline-queue", Exten="s")
    peers.run(ami.send_event("Newchannel", {"Channel": channel, "ChannelState": "4", "CallerIDNum": CALLER,
                                            "CallerIDName": "", "Uniqueid": uid, "Linkedid": uid, "Exten": "12319",
                                            "Context": "hotline-in"}))
    peers.run(ami.send_event("AgentConnect", {"Queue": "city", "Uniqueid": uid, "Interface": "PJSIP/1001",
                                              "MemberName": "PJSIP/1001", "CallerIDNum": CALLER, "HoldTime": "4",
                                              "RingTime": "2", "DestChannel": "PJSIP/1001-0000002a"}))
    page.wait_for_selector("#pop-number")
    assert page.inner_text("#pop-number") == "138 0013 8000"
    assert product["earlier"] in page.inner_text("#earlier-cases")
    page.click("#btn-new-case")
    page.wait_for_selector(f"#case-form input[name=call_uniqueid][value='{uid}']", state="attached")
    assert page.input_value("#caller_phone") == "138 0013 8000"

    page.fill("#address_text", "福田区华强北路赛格广场门口")
    page.wait_for_selector("#place-district")
    assert page.inner_text("#place-district") == "福田区"
    page.fill("#category_q", "ljdj")
    page.click(".cat-option[data-key=E0102]")
    assert page.input_value("#category_key") == "E0102"
    page.fill("#description", "门口垃圾堆积两天没人清运" + XSS)
    page.fill("#caller_name", "张先生")
    page.wait_for_timeout(800)   # the draft is saved as the agent types
    shot(page, product, "desk-call-form")

    page.reload()   # mid-call: the same call and the unsaved form come back
    page.wait_for_selector("#pop-number")
    assert page.input_value("#address_text") == "福田区华强北路赛格广场门口"
    assert page.input_value("#description") == "门口垃圾堆积两天没人清运" + XSS
    assert page.input_value("#category_key") == "E0102"

    page.click("#btn-submit")
    page.wait_for_selector("#new-case-number")
    number = page.inner_text("#new-case-number")
    with product["db"].read_session() as s:
        import ivr
        case = product["core"].get_case(s, number, product["core"].router and __import__("hotline.accounts", fromlist=["SYSTEM"]).SYSTEM)
        assert case.call_uniqueid == uid and case.category_key == "E0102" and case.district_code == "440304"
        assert [c.uniqueid for c in ivr.calls_of_case(s, case.id)] == [uid]
        keys = list(s.scalars(select(OutboxItem.idempotency_key).where(OutboxItem.case_id == case.id)))
        assert f"sms:receipt:{case.id}" in keys
    shot(page, product, "desk-case-made")

    page.click("#btn-transfer")
    page.wait_for_selector("#transfer-ok, #transfer-result .error")
    redirect = peers.run(ami.wait_action("Redirect"))
    assert redirect["Channel"] == channel and redirect["Context"] == "hotline-transfer"

    # the case page shows the hostile name as text
    page.goto(f"/cases/{number}")
    assert XSS.replace("\u202e", "")[:20] in page.inner_text("dl.facts")
    assert page.evaluate("() => document.querySelectorAll('img[src=x]').length") == 0
    shot(page, product, "case-page")
    page.goto("/cases")
    shot(page, product, "case-list")


def test_sms_reports_appear_live_and_become_cases(browser, product):
    peers = product["peers"]
    page = page_of(browser, product)
    sign_in(page, "agent1")
    page.goto("/sms")
    page.wait_for_selector("#live-status.on")
    peers.run(peers.smsc.send_mo("13900139000", "南山区科技园科苑路有人占道经营<b>摆摊</b>"))
    page.wait_for_selector("article.sms-item")
    assert "<b>摆摊</b>" in page.inner_text("article.sms-item .text")
    shot(page, product, "sms-list")
    page.click("article.sms-item button.primary")
    page.wait_for_selector("#sms-message.ok")
    made = re.search(r"[CE]\d{16}", page.inner_text("#sms-message")).group(0)
    peers.run(peers.smsc.send_mo("13900139000", "还在摆摊，请尽快处理"))
    page.wait_for_selector("article.sms-item select[name=number]")
    page.click("article.sms-item form[hx-post$='/merge'] button")
    page.wait_for_selector("#sms-message.ok")
    assert made in page.inner_text("#sms-message")


def test_scope_csrf_and_throttling(browser, product):
    base = product["base"]
    page = page_of(browser, product)
    sign_in(page, "nanshan1")
    page.wait_for_url("**/cases")
    other = page.goto(f"/cases/{product['earlier']}")   # a 福田 case
    missing = page.goto("/cases/E0000000000000000")
    assert other.status == missing.status == 404
    # a request with the session but without the CSRF token changes nothing
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    before = httpx.get(f"{base}/cases/{product['earlier']}", cookies=cookies).status_code
    agent = page_of(browser, product)
    sign_in(agent, "agent1")
    agent.wait_for_url("**/desk")
    jar = {c["name"]: c["value"] for c in agent.context.cookies()}
    r = httpx.post(f"{base}/desk/case", cookies=jar, data={"description": "无令牌", "form_key": "nocsrf"})
    assert r.status_code == 403 and before == 404
    with product["db"].read_session() as s:
        assert not product["core"].search_cases(s, __import__("hotline.accounts", fromlist=["SYSTEM"]).SYSTEM,
                                                "无令牌")[1]
    # five wrong passwords are answered; the sixth is throttled with when to try again
    client = httpx.Client(base_url=base)
    for i in range(6):
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        r = client.post("/login", data={"username": "super1", "password": "wrong-password", "csrf_token": token})
        assert r.status_code == (401 if i < 5 else 429), (i, r.status_code)
    assert "后再试" in r.text
    shot(page, product, "district-404")
