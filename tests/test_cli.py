"""The CLI as an operator uses it, in a fresh directory: seed, users, case show, run and stop."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.postgres import free_port


def hotline(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], capture_output=True, text=True,
                          input=stdin, env={**os.environ, **(env or {})}, timeout=120)


def test_seed_prints_demo_passwords_once_and_users_can_be_managed():
    first = hotline("seed")
    assert first.returncode == 0, first.stderr
    assert "handling units: 10 created" in first.stdout and "144 sub-classes" in first.stdout
    for role in ("agent", "dispatcher", "district", "supervisor", "admin"):
        assert f" {role} " in first.stdout
    again = hotline("seed")
    assert "handling units: 0 created" in again.stdout and "Demo users" not in again.stdout

    added = hotline("users", "add", "wang", "--role", "district", "--unit", "440305", "--password-stdin",
                    stdin="a-long-enough-secret\n")
    assert added.returncode == 0 and "user wang (district) added" in added.stdout
    short = hotline("users", "add", "li", "--role", "agent", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    no_unit = hotline("users", "add", "zhao", "--role", "district", "--password-stdin", stdin="a-long-enough-secret\n")
    assert no_unit.returncode != 0 and "needs --unit" in no_unit.stderr
    assert "is now supervisor" in hotline("users", "set-role", "wang", "supervisor").stdout
    assert "password of wang reset" in hotline("users", "reset-password", "wang").stdout
    key = hotline("users", "api-key", "wang", "--name", "district-system").stdout.strip().splitlines()[-1]
    assert key.startswith("hk_")
    listing = hotline("users", "list").stdout
    assert "wang" in listing and "supervisor" in listing
    keys = hotline("users", "api-key", "list", "wang").stdout
    assert "district-system" in keys and "active" in keys
    key_id = keys.split()[0].lstrip("#")
    assert "revoked" in hotline("users", "api-key", "revoke", key_id).stdout
    assert "revoked" in hotline("users", "api-key", "list").stdout
    assert hotline("users", "api-key", "revoke", "999").returncode != 0
    assert "user wang disabled" in hotline("users", "disable", "wang").stdout
    assert "disabled" in hotline("users", "list").stdout


def test_bad_settings_stop_the_cli_with_the_reason():
    out = hotline("db", "upgrade", env={"HOTLINE_WEB_PORT": "eighty"})
    assert out.returncode != 0 and "HOTLINE_WEB_PORT" in out.stderr


def test_case_show_prints_the_timeline():
    assert hotline("seed").returncode == 0
    key = hotline("users", "api-key", "agent", "--name", "t").stdout.strip().splitlines()[-1]
    from fastapi.testclient import TestClient
    from agent_ui import create_app
    from hotline.settings import get_settings
    get_settings.cache_clear()
    client = TestClient(create_app())
    made = client.post("/api/v1/cases", headers={"Authorization": f"Bearer {key}"},
                       json={"description": "井盖丢失", "category_key": "C0114", "district_code": "440304",
                             "place_confirmed": True, "address_text": "福田区深南中路"})
    assert made.status_code == 201, made.text
    number = made.json()["number"]
    shown = hotline("case", "show", number)
    assert shown.returncode == 0, shown.stderr
    assert number in shown.stdout and "无主井盖" in shown.stdout and "dispatch" in shown.stdout
    assert "filed → dispatched" in shown.stdout
    missing = hotline("case", "show", "E0000000000000000")
    assert missing.returncode != 0 and "no case" in missing.stderr


@pytest.mark.timeout(120)
def test_run_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    port, agi_port, ami_port = free_port(), free_port(), free_port()
    env = {**os.environ, "HOTLINE_WEB_PORT": str(port), "HOTLINE_AGI_PORT": str(agi_port),
           "HOTLINE_AMI_PORT": str(ami_port),   # no PBX there: the AMI link keeps retrying
           "HOTLINE_SMPP_PORT": str(free_port()),   # nor an SMS centre
           "HOTLINE_OUTBOX_POLL_SECONDS": "0.2"}    # beat ticks five times a second: none of it may be logged
    proc = subprocess.Popen([sys.executable, "-m", "hotline.cli", "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if r.status_code == 200:
                    health = r.json()
                    break
            except httpx.HTTPError:
                r = None  # not listening yet: try again until the deadline
            assert time.monotonic() < deadline and proc.poll() is None, "hotline run did not come up"
            time.sleep(0.3)
        from ivr.agi_peer import AGIPeer   # the FastAGI server of `run` takes a call
        call = asyncio.run(AGIPeer("127.0.0.1", agi_port, keys=["1"]).run())
        assert call.variables["HOTLINE_INTENT"] == "report"
        home = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)   # signed out: the sign-in page
        assert "12319 城建服务热线" in home.text
        docs = httpx.get(f"http://127.0.0.1:{port}/docs")
        assert "/static/docs/swagger-ui-bundle.js" in docs.text  # no CDN
        assert httpx.get(f"http://127.0.0.1:{port}/static/docs/swagger-ui-bundle.js").status_code == 200
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert "AMI unreachable" in out and "FastAGI listening" in out
    assert health["status"] == "ok" and "calendar_known_through" in health
    # no prompt was built in this data folder: the status says so in words a person can act on
    assert any("hotline prompts build" in w and "语音提示缺失" in w for w in health["warnings"]), health
    assert str(home.url).endswith("/login") and "登录" in home.text
    # the first screen is what a person needs: no beat tick, no poll task, no request that went well
    assert "Sending due task" not in out and "outbox.dispatch" not in out and "GET /healthz" not in out, out
