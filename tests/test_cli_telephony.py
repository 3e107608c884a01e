"""The telephony commands as an operator uses them, in a fresh directory."""
from __future__ import annotations

import re
import wave
from pathlib import Path

from tests.test_cli import hotline


def test_simulate_call_plays_the_progress_query_without_a_pbx():
    out = hotline("simulate-call", "--from", "13800138000", "--keys", "2,#")
    assert out.returncode == 0, out.stderr
    assert "输入案件编号按井号结束" in out.stdout and "没有查到您名下的案件" in out.stdout
    assert "HOTLINE_INTENT=done" in out.stdout


def test_a_simulated_call_is_linked_to_the_case_created_from_it():
    assert hotline("seed").returncode == 0
    out = hotline("simulate-call", "--keys", "1", "--write")
    assert "HOTLINE_INTENT=report" in out.stdout and "HOTLINE_QUEUE=city" in out.stdout
    uniqueid = re.search(r"call (sim-[0-9.]+) from", out.stdout).group(1)
    key = hotline("users", "api-key", "agent", "--name", "t").stdout.strip().splitlines()[-1]
    from fastapi.testclient import TestClient

    from agent_ui import create_app
    from hotline.settings import get_settings
    get_settings.cache_clear()
    client = TestClient(create_app())
    made = client.post(
        "/api/v1/cases", headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uniqueid},
        json={"call_uniqueid": uniqueid, "description": "井盖丢失", "category_key": "C0114", "channel": "phone", "caller_phone": "13800138000",
              "address_text": "福田区深南中路"})
    assert made.status_code == 201, made.text
    shown = hotline("case", "show", made.json()["number"])
    assert "通话:" in shown.stdout and "意图 report" in shown.stdout and "队列 city" in shown.stdout


def test_simulated_calls_and_surveys_change_nothing_unless_told(tmp_path):
    assert hotline("seed").returncode == 0
    tried = hotline("simulate-call", "--keys", "1")
    assert tried.returncode == 0 and "throw-away copy" in tried.stdout
    uniqueid = re.search(r"call (sim-[0-9.]+) from", tried.stdout).group(1)
    from sqlalchemy import select

    from hotline.db import Database
    from hotline.settings import get_settings
    from ivr.models import Call
    get_settings.cache_clear()
    db = Database(get_settings().database_url)
    with db.session() as s:
        assert s.scalar(select(Call).where(Call.uniqueid == uniqueid)) is None
    db.dispose()
    refused = hotline("simulate-call", "--script", "survey", "--case", "E0101202600001", "--keys", "1", "--write")
    assert refused.returncode != 0 and "callback" in refused.stderr


def test_asterisk_config_and_prompts_build(tmp_path):
    out = hotline("asterisk-config", "--out", str(tmp_path / "etc"), "--agent-passwords")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == [
        "asterisk.conf", "extensions.conf", "manager.conf", "modules.conf", "musiconhold.conf", "pjsip.conf", "queues.conf"]
    assert "change-me" in out.stderr          # the default secrets are called out
    assert "agent 1001: SIP user 1001, password" in out.stdout
    bad = hotline("asterisk-config", "--out", str(tmp_path / "bad"), env={"HOTLINE_CITY_QUEUE": "x]\n[evil"})
    assert bad.returncode == 1 and "not written" in bad.stderr and not (tmp_path / "bad").exists()

    built = hotline("prompts", "build", env={"HOTLINE_PROMPTS_DIR": str(tmp_path / "prompts")})
    assert built.returncode == 0, built.stderr
    with wave.open(str(Path(tmp_path / "prompts" / "welcome.wav")), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2) and w.getnframes() > 8000
