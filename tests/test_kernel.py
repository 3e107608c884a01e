"""The shared kernel: settings, phone numbers, the working calendar, the event bus."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from hotline.bus import InProcessBus
from hotline.phone import InvalidPhoneNumber, normalise
from hotline.settings import SettingsError, load_settings
from hotline.workcalendar import CalendarError, load_calendar

SZ = ZoneInfo("Asia/Shanghai")


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SZ)


def test_settings_from_env_and_toml(tmp_path, monkeypatch):
    cfg = tmp_path / "site.toml"
    cfg.write_text('web_port = 9000\ncity_name = "东莞市"\n', "utf-8")
    monkeypatch.setenv("HOTLINE_CONFIG", str(cfg))
    monkeypatch.setenv("HOTLINE_WEB_PORT", "9100")  # the environment wins over the file
    s = load_settings()
    assert (s.web_port, s.city_name) == (9100, "东莞市")
    assert s.database_url.startswith("sqlite:///") and s.broker_url.startswith("sqla+sqlite:///")


@pytest.mark.parametrize("env, value, words", [
    ("HOTLINE_WEB_PORT", "99999", "HOTLINE_WEB_PORT"),
    ("HOTLINE_TIMEZONE", "Mars/Base", "unknown time zone"),
    ("HOTLINE_DATABASE_URL", "mysql://x", "only sqlite"),
    ("HOTLINE_NO_SUCH_THING", "1", "HOTLINE_NO_SUCH_THING"),
])
def test_wrong_settings_say_which_and_why(monkeypatch, env, value, words):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=words):
        load_settings()


def test_config_file_that_does_not_exist(monkeypatch):
    monkeypatch.setenv("HOTLINE_CONFIG", "/nonexistent/hotline.toml")
    with pytest.raises(SettingsError, match="not a readable file"):
        load_settings()


@pytest.mark.parametrize("text, e164, mobile", [
    ("13800138000", "+8613800138000", True),
    ("+86 138-0013-8000", "+8613800138000", True),
    ("008613800138000", "+8613800138000", True),
    ("0755-83456789", "+8675583456789", False),
    ("12319", "12319", False),
    ("1069012319", "1069012319", False),
])
def test_phone_numbers_normalise(text, e164, mobile):
    n = normalise(text)
    assert (n.e164, n.is_mobile) == (e164, mobile)


@pytest.mark.parametrize("text", ["", "abc", "123", "1380013800", "+1 555 0100 0000 0000"])
def test_not_phone_numbers(text):
    with pytest.raises(InvalidPhoneNumber):
        normalise(text)


def test_work_minutes_skip_nights_weekends_and_holidays():
    cal = load_calendar()
    assert cal.minutes_per_workday == 480
    # Friday 2026-11-20 17:00 + 2 work hours → Monday 2026-11-23 09:30 (1 h Friday, 1 h Monday from 08:30)
    assert cal.add_work_minutes(local(2026, 11, 20, 17, 0), 120) == local(2026, 11, 23, 9, 30).astimezone(timezone.utc)
    # lunch break is not working time
    assert cal.add_work_minutes(local(2026, 11, 23, 11, 0), 120) == local(2026, 11, 23, 14, 30).astimezone(timezone.utc)
    # 国庆: 2026-09-30 (Wed) 17:00 + 2 h → 1 h on 09-30, then 10-01..07 holidays, 10-08 Thu 08:30 + 1 h
    assert cal.add_work_minutes(local(2026, 9, 30, 17, 0), 120) == local(2026, 10, 8, 9, 30).astimezone(timezone.utc)
    # 调休: Saturday 2026-10-10 is a working day
    assert cal.is_workday(local(2026, 10, 10).date()) and not cal.is_workday(local(2026, 10, 11).date())
    assert cal.work_minutes_between(local(2026, 11, 20, 17, 0), local(2026, 11, 23, 9, 30)) == 120
    assert cal.work_minutes_between(local(2026, 11, 23, 9, 0), local(2026, 11, 23, 8, 0)) == 0


def test_calendar_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "cal.toml"
    bad.write_text('work_periods = ["09:00-08:00"]\n', "utf-8")
    with pytest.raises(CalendarError, match="ends before it starts"):
        load_calendar(bad)
    bad.write_text('work_periods = ["09:00-12:00"]\nholidays = ["2026-13-01"]\n', "utf-8")
    with pytest.raises(CalendarError, match="holidays entry"):
        load_calendar(bad)
    bad.write_text('work_periods = ["09:00-12:00", "11:00-13:00"]\n', "utf-8")
    with pytest.raises(CalendarError, match="overlap"):
        load_calendar(bad)


def test_bus_delivers_by_pattern_and_survives_a_failing_handler():
    bus = InProcessBus()
    got = []

    async def good(event):
        got.append((event.topic, event.data["n"]))

    async def bad(event):
        raise RuntimeError("boom")

    bus.subscribe("case.*", bad)
    unsubscribe = bus.subscribe("case.*", good)
    bus.subscribe("call.*", good)

    async def scenario():
        await bus.publish("case.created", {"n": 1})
        await bus.publish("call.hangup", {"n": 2})
        unsubscribe()
        await bus.publish("case.closed", {"n": 3})

    asyncio.run(scenario())
    assert got == [("case.created", 1), ("call.hangup", 2)]


def test_unknown_key_in_the_toml_file(tmp_path, monkeypatch):
    cfg = tmp_path / "site.toml"
    cfg.write_text("web_prot = 9000\n", "utf-8")
    monkeypatch.setenv("HOTLINE_CONFIG", str(cfg))
    with pytest.raises(SettingsError, match="web_prot"):
        load_settings()


def test_json_logs_carry_the_case_and_the_access_log_keeps_only_failures_without_secrets(capsys):
    import json
    import logging

    from hotline.logs import configure_logging
    try:
        configure_logging("INFO", "json")
        logging.getLogger("case_bridge.outbox").warning("sms failed", extra={"case": "E0102202611230001",
                                                                             "outbox_key": "sms:receipt:1"})
        access = logging.getLogger("uvicorn.access")
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/healthz", "1.1", 200)
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/open311/v2/requests.json?api_key=hk_s3cret",
                    "1.1", 403)
        logging.getLogger("celery.beat").info("Scheduler: Sending due task outbox-dispatch")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        configure_logging("INFO", "text")
    assert lines[0]["case"] == "E0102202611230001" and lines[0]["outbox_key"] == "sms:receipt:1"
    assert lines[0]["level"] == "WARNING" and lines[0]["message"] == "sms failed"
    assert len(lines) == 2 and "hk_s3cret" not in lines[1]["message"] and "api_key=[redacted]" in lines[1]["message"]
