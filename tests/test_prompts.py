"""The prompt catalogue and the prompt build, with the real espeak-ng and sox (test.sh installs them)."""
from __future__ import annotations

import array
import json
import math
import os
import shutil
import subprocess
import time
import wave
from pathlib import Path

import pytest

from case_bridge.workflow import STATES
from hotline.settings import get_settings, load_settings
from ivr.prompts import (
    FILE_MODE, MANIFEST, Catalogue, Prompt, PromptError, UnknownPromptError, build_prompts, load_catalogue,
    packaged_catalogue_path, prompt_exists,
)

SHENZHEN_DISTRICTS = {"440303": "罗湖区", "440304": "福田区", "440305": "南山区", "440306": "宝安区",
                      "440307": "龙岗区", "440308": "盐田区", "440309": "龙华区", "440310": "坪山区",
                      "440311": "光明区"}
SMALL = {"welcome": ("您好，欢迎致电幺二三幺九城建服务热线。", "ivr"),
         "goodbye": ("感谢您的来电，再见。", "ivr"),
         "queue_periodic": ("座席正忙，请继续等待。", "queue")}


@pytest.fixture
def tools() -> None:
    """The real tools: a CI run without them fails (test.sh installs them); elsewhere the tests skip."""
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        message = f"{' and '.join(missing)} not installed: apt-get install espeak-ng sox (test.sh does this)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def cfg(tmp_path):
    return load_settings(data_dir=tmp_path / "var", studio_prompts_dir=tmp_path / "studio")


def write_catalogue(path: Path, entries: dict[str, object]) -> Path:
    """entries: id → (text, used_by) or a raw TOML body string."""
    lines = []
    for pid, body in entries.items():
        lines.append(f"[prompts.{pid}]")
        if isinstance(body, tuple):
            lines += [f'text = "{body[0]}"', f'used_by = "{body[1]}"']
        else:
            lines.append(str(body))
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def audio(path: Path) -> tuple[int, int, int, float, int]:
    """(rate, channels, sample width, seconds, peak) of a WAV file, after checking it is RIFF WAVE PCM."""
    head = path.read_bytes()[:12]
    assert head[:4] == b"RIFF" and head[8:12] == b"WAVE", f"{path} is not a RIFF WAVE file: {head!r}"
    with wave.open(str(path), "rb") as w:
        assert w.getcomptype() == "NONE"
        frames = w.readframes(w.getnframes())
        rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
    samples = array.array("h", frames) if width == 2 else array.array("h")
    return rate, channels, width, n / rate, max((abs(s) for s in samples), default=0)


def assert_asterisk_wav(path: Path, min_seconds: float = 0.2) -> float:
    rate, channels, width, seconds, peak = audio(path)
    assert (rate, channels, width) == (8000, 1, 2), f"{path.name}: {rate} Hz, {channels} ch, {8 * width}-bit"
    assert seconds >= min_seconds, f"{path.name}: only {seconds:.2f} s of audio"
    assert peak > 1000, f"{path.name}: silent (peak {peak})"
    return seconds


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 2, hz: float = 440.0) -> None:
    n = int(seconds * rate)
    samples = array.array("h")
    for i in range(n):
        v = int(12000 * math.sin(2 * math.pi * hz * i / rate))
        samples.extend([v] * channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def expected_voice() -> str:
    listed = subprocess.run(["espeak-ng", "--voices=cmn"], capture_output=True, text=True, check=True).stdout
    return "cmn-latn-pinyin" if " cmn-latn-pinyin " in listed else "cmn"


# --- building ------------------------------------------------------------------------------------------

def test_build_small_catalogue_then_skip_then_rebuild_changed_text(tools, cfg, tmp_path, caplog):
    toml = write_catalogue(tmp_path / "prompts.toml", SMALL)
    catalogue = load_catalogue(toml, districts=None)
    assert list(catalogue) == list(SMALL)
    folder = cfg.prompts_dir.absolute()

    caplog.set_level("INFO", logger="ivr.prompts")
    report = build_prompts(cfg, catalogue)
    assert report.errors == {}
    assert sorted(report.built) == sorted(SMALL) and report.skipped == [] and report.studio == []
    assert report.voice == expected_voice()
    assert report.voice == "cmn-latn-pinyin", "Debian 12's espeak-ng ships the pinyin voice; cmn misreads"
    assert f"voice {report.voice}" in caplog.text                 # the build logs the voice it used
    for pid in SMALL:
        path = folder / f"{pid}.wav"
        assert catalogue.path(pid, cfg) == folder / pid          # what Asterisk plays: no extension
        assert catalogue.path(pid, cfg).is_absolute()
        assert prompt_exists(cfg, pid)
        assert_asterisk_wav(path, min_seconds=1.0)
        assert path.stat().st_mode & 0o777 == FILE_MODE           # readable by Asterisk's user
    # the longest text gives the longest audio: the synthesiser really spoke the texts
    lengths = {pid: audio(folder / f"{pid}.wav")[3] for pid in SMALL}
    assert max(lengths, key=lengths.get) == "welcome"
    manifest = json.loads((folder / MANIFEST).read_text("utf-8"))["prompts"]
    assert set(manifest) == set(SMALL)
    assert {e["voice"] for e in manifest.values()} == {report.voice}
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"

    stamps = {pid: (folder / f"{pid}.wav").stat().st_mtime_ns for pid in SMALL}
    again = build_prompts(cfg, catalogue)
    assert again.built == [] and sorted(again.skipped) == sorted(SMALL) and again.errors == {}
    assert {pid: (folder / f"{pid}.wav").stat().st_mtime_ns for pid in SMALL} == stamps

    before = (folder / "goodbye.wav").read_bytes()
    changed = dict(SMALL, goodbye=("感谢您的来电。祝您生活愉快，再见。", "ivr"))
    rebuilt = build_prompts(cfg, load_catalogue(write_catalogue(toml, changed), districts=None))
    assert rebuilt.built == ["goodbye"] and sorted(rebuilt.skipped) == ["queue_periodic", "welcome"]
    assert (folder / "goodbye.wav").read_bytes() != before
    assert audio(folder / "goodbye.wav")[3] > audio_seconds_of(before)
    assert (folder / "welcome.wav").stat().st_mtime_ns == stamps["welcome"]

    (folder / "welcome.wav").unlink()                              # a lost file is rebuilt
    assert build_prompts(cfg, load_catalogue(toml, districts=None)).built == ["welcome"]
    forced = build_prompts(cfg, load_catalogue(toml, districts=None), force=True)
    assert sorted(forced.built) == sorted(SMALL) and forced.skipped == []


def audio_seconds_of(data: bytes) -> float:
    import io
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnframes() / w.getframerate()


def test_studio_recording_takes_precedence_and_is_converted(tools, cfg, tmp_path):
    catalogue = load_catalogue(write_catalogue(tmp_path / "prompts.toml", SMALL), districts=None)
    studio = cfg.studio_prompts_dir / "welcome.wav"
    write_tone(studio, 0.5)                                        # 16 kHz stereo
    assert audio(studio)[:3] == (16000, 2, 2)

    report = build_prompts(cfg, catalogue)
    assert report.errors == {} and report.studio == ["welcome"] and sorted(report.built) == sorted(SMALL)
    out = cfg.prompts_dir / "welcome.wav"
    seconds = assert_asterisk_wav(out)
    assert abs(seconds - 0.5) < 0.02, f"the studio tone lasts 0.5 s, the built file {seconds:.3f} s (synthesised?)"
    entry = json.loads((cfg.prompts_dir / MANIFEST).read_text("utf-8"))["prompts"]["welcome"]
    assert entry["source"] == "studio" and "voice" not in entry

    assert build_prompts(cfg, catalogue).built == []               # unchanged studio file: skipped
    write_tone(studio, 1.0, rate=44100, channels=1)                # a new recording replaces the old one
    assert build_prompts(cfg, catalogue).built == ["welcome"]
    assert abs(assert_asterisk_wav(out) - 1.0) < 0.02

    studio.unlink()                                                # back to the synthesiser
    back = build_prompts(cfg, catalogue)
    assert back.built == ["welcome"] and back.studio == []
    assert assert_asterisk_wav(out, min_seconds=1.5) > 1.5


def test_all_studio_needs_no_synthesiser(tools, cfg, tmp_path, monkeypatch):
    catalogue = load_catalogue(write_catalogue(tmp_path / "prompts.toml", {"goodbye": SMALL["goodbye"]}),
                               districts=None)
    write_tone(cfg.studio_prompts_dir / "goodbye.wav", 0.3)
    only_sox = tmp_path / "bin"
    only_sox.mkdir()
    (only_sox / "sox").symlink_to(shutil.which("sox"))
    monkeypatch.setenv("PATH", str(only_sox))
    report = build_prompts(cfg, catalogue)
    assert report.errors == {} and report.voice is None and report.studio == ["goodbye"]
    assert_asterisk_wav(cfg.prompts_dir / "goodbye.wav")


def test_a_bad_studio_file_fails_that_prompt_only(tools, cfg, tmp_path):
    catalogue = load_catalogue(write_catalogue(tmp_path / "prompts.toml", SMALL), districts=None)
    cfg.studio_prompts_dir.mkdir(parents=True)
    (cfg.studio_prompts_dir / "goodbye.wav").write_bytes(b"this is not audio at all" * 10)
    report = build_prompts(cfg, catalogue)
    assert list(report.errors) == ["goodbye"] and "sox" in report.errors["goodbye"]
    assert not report.ok and "goodbye: " in report.summary() and "1 failed" in report.summary()
    assert sorted(report.built) == ["queue_periodic", "welcome"]
    assert not prompt_exists(cfg, "goodbye")
    assert "goodbye" not in json.loads((cfg.prompts_dir / MANIFEST).read_text("utf-8"))["prompts"]
    assert not [p.name for p in cfg.prompts_dir.iterdir() if p.name.startswith(".")], "temporary files left"
    # the next run retries the failed one only
    (cfg.studio_prompts_dir / "goodbye.wav").unlink()
    retry = build_prompts(cfg, catalogue)
    assert retry.built == ["goodbye"] and retry.errors == {}


@pytest.mark.parametrize("keep, missing", [("sox", "espeak-ng"), ("espeak-ng", "sox")])
def test_missing_tool_is_a_clear_error(tools, cfg, tmp_path, monkeypatch, keep, missing):
    catalogue = load_catalogue(write_catalogue(tmp_path / "prompts.toml", SMALL), districts=None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / keep).symlink_to(shutil.which(keep))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(PromptError) as err:
        build_prompts(cfg, catalogue)
    assert str(err.value) == f"{missing} not found: apt-get install espeak-ng sox"
    assert not cfg.prompts_dir.exists()


def test_full_packaged_catalogue_builds(tools, tmp_path):
    """The whole catalogue, once (about 60 prompts): every file is what Asterisk plays."""
    settings = load_settings(data_dir=tmp_path / "var")
    started = time.monotonic()
    report = build_prompts(settings, progress=lambda items, total, label: list(items))
    seconds = time.monotonic() - started
    catalogue = load_catalogue()
    assert report.errors == {}, report.summary()
    assert sorted(report.built) == sorted(catalogue) and len(catalogue) >= 60
    assert report.voice == "cmn-latn-pinyin"
    for pid in catalogue:
        assert_asterisk_wav(settings.prompts_dir / f"{pid}.wav", min_seconds=0.15)
    assert seconds < 60, f"full build took {seconds:.1f} s"
    print(f"\nfull prompt build: {len(report.built)} prompts in {seconds:.1f} s, voice {report.voice}")
    assert build_prompts(settings).built == []


# --- the catalogue -------------------------------------------------------------------------------------

@pytest.mark.parametrize("entries, entry, reason", [
    ({"Welcome": ("您好", "ivr")}, "Welcome", "must match"),
    ({"1st": ("您好", "ivr")}, "1st", "must match"),
    ({"a" * 42: ("您好", "ivr")}, "a" * 42, "must match"),
    ({"welcome": 'text = "您好"\nused_by = "ivr"\nvoice = "x"'}, "welcome", "unknown key(s) voice"),
    ({"welcome": ('', "ivr")}, "welcome", "text is missing or empty"),
    ({"welcome": ('   ', "ivr")}, "welcome", "text is missing or empty"),
    ({"welcome": 'used_by = "ivr"'}, "welcome", "text is missing or empty"),
    ({"welcome": ("长" * 301, "ivr")}, "welcome", "at most 300"),
    ({"welcome": ("您好", "sms")}, "welcome", "used_by is 'sms'"),
    ({"welcome": 'text = "您好"'}, "welcome", "used_by is None"),
    ({"welcome": 'text = 3\nused_by = "ivr"'}, "welcome", "text is missing or empty"),
])
def test_validation_names_file_and_entry(tmp_path, entries, entry, reason):
    toml = write_catalogue(tmp_path / "bad.toml", {"goodbye": ("再见", "ivr"), **entries})
    with pytest.raises(PromptError) as err:
        load_catalogue(toml, districts=None)
    message = str(err.value)
    assert str(toml) in message and repr(entry) in message and reason in message, message


def test_catalogue_file_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('[prompts.welcome]\ntext = "unclosed\n', "utf-8")
    with pytest.raises(PromptError, match=r"broken\.toml: not valid TOML"):
        load_catalogue(broken, districts=None)
    extra = tmp_path / "extra.toml"
    extra.write_text('voice = "cmn"\n[prompts.welcome]\ntext = "您好"\nused_by = "ivr"\n', "utf-8")
    with pytest.raises(PromptError, match=r"extra\.toml: unknown top-level key\(s\) voice"):
        load_catalogue(extra, districts=None)
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing\n", "utf-8")
    with pytest.raises(PromptError, match=r"empty\.toml: no prompts"):
        load_catalogue(empty, districts=None)
    with pytest.raises(PromptError, match=r"missing\.toml: cannot read"):
        load_catalogue(tmp_path / "missing.toml", districts=None)


def test_unknown_and_unsafe_ids(cfg, tmp_path):
    catalogue = load_catalogue(write_catalogue(tmp_path / "prompts.toml", SMALL), districts=None)
    with pytest.raises(UnknownPromptError, match="no prompt 'nope'") as err:
        catalogue.path("nope", cfg)
    assert isinstance(err.value, KeyError) and isinstance(err.value, PromptError)
    assert str(err.value).startswith("no prompt 'nope' in ")
    assert "nope" not in catalogue and catalogue.get("nope") is None
    with pytest.raises(UnknownPromptError):
        catalogue["../../etc/passwd"]
    with pytest.raises(PromptError, match="not valid"):
        Catalogue([Prompt("../escape", "x", "ivr")])
    with pytest.raises(PromptError, match="not valid"):
        Catalogue([Prompt("a/b", "x", "ivr")])
    for bad in ("../welcome", "/etc/passwd", "welcome.wav", "", "a\x00b"):
        assert prompt_exists(cfg, bad) is False
    assert prompt_exists(cfg, "welcome") is False                  # valid, not built


def test_district_prompts_from_the_configured_gazetteer(tmp_path, monkeypatch):
    toml = write_catalogue(tmp_path / "prompts.toml", SMALL)
    catalogue = load_catalogue(toml)
    districts = {pid: p for pid, p in catalogue.items() if pid.startswith("district_")}
    assert {pid: p.text for pid, p in districts.items()} == {f"district_{c}": n for c, n in SHENZHEN_DISTRICTS.items()}
    assert catalogue["district_440304"] == Prompt("district_440304", "福田区", "ivr")
    # the TOML's own wording for a district replaces the generated one
    own = load_catalogue(write_catalogue(tmp_path / "own.toml", {**SMALL, "district_440304": ("福田", "ivr")}))
    assert own["district_440304"].text == "福田" and own["district_440305"].text == "南山区"
    # explicit districts, and none
    assert [p for p in load_catalogue(toml, districts={"440402": "香洲区"}) if p.startswith("district_")] == \
        ["district_440402"]
    assert not [p for p in load_catalogue(toml, districts=None) if p.startswith("district_")]
    # another configured city
    monkeypatch.setenv("HOTLINE_GAZETTEER", "zhuhai")
    get_settings.cache_clear()
    zhuhai = load_catalogue(toml)
    assert zhuhai["district_440402"].text == "香洲区" and "district_440304" not in zhuhai
    monkeypatch.setenv("HOTLINE_GAZETTEER", str(tmp_path / "no-such-city"))
    get_settings.cache_clear()
    with pytest.raises(PromptError, match="district prompts: the configured gazetteer cannot be read: .*no-such-city"):
        load_catalogue(toml)


def test_packaged_catalogue(cfg):
    catalogue = load_catalogue()
    assert catalogue.source == str(packaged_catalogue_path())
    for state in STATES:
        assert f"state_{state}" in catalogue, f"no prompt for case state {state}"
    for d in range(10):
        assert f"digit_{d}" in catalogue
    assert catalogue["digit_1"].text == "幺"
    for code, name in SHENZHEN_DISTRICTS.items():
        assert catalogue[f"district_{code}"].text == name
    assert {p.used_by for p in catalogue.values()} == {"ivr", "dialplan", "queue"}
    for prompt in catalogue.values():
        assert "12319" not in prompt.text                          # said digit by digit: 幺二三幺九
        assert catalogue.path(prompt.id, cfg) == cfg.prompts_dir.absolute() / prompt.id
    assert "幺二三幺九" in catalogue["welcome"].text
    for pid in ("welcome", "menu", "district_menu", "press", "voicemail", "queue_thereare", "survey_question"):
        assert pid in catalogue


def test_the_build_measures_every_prompt_and_flags_the_long_ones(tools, tmp_path):
    long_text = "反映城市管理问题请按一，查询案件办理进度请按二，政策咨询请按三，人工服务请按零，谢谢您的来电。"
    toml = write_catalogue(tmp_path / "prompts.toml", {"short": ("再见。", "ivr"), "long": (long_text, "ivr")})
    cfg = load_settings(data_dir=tmp_path / "var")
    report = build_prompts(cfg, load_catalogue(toml, districts=None))
    assert set(report.lengths) == {"short", "long"} and 0 < report.lengths["short"] < 2
    assert list(report.too_long) == ["long"]
    text = report.summary()
    assert "long" in text and "too long" in text and "music on hold: moh/hold.wav built" in text
    # a faster voice is a setting; changing it rebuilds, and the prompts get shorter
    faster = load_settings(data_dir=tmp_path / "var", prompt_voice_rate=260)
    again = build_prompts(faster, load_catalogue(toml, districts=None))
    assert sorted(again.built) == ["long", "short"] and again.lengths["long"] < report.lengths["long"]


def test_the_shipped_prompts_a_caller_waits_through_are_short(tools, tmp_path):
    cfg = load_settings(data_dir=tmp_path / "var")
    report = build_prompts(cfg, load_catalogue(districts=None))
    assert report.ok, report.errors
    # what a caller with an open case hears before the menu listens: the recording notice alone
    assert report.lengths["recording_notice"] < 4
    waiting = ("recording_notice", "welcome", "open_cases", "menu")
    assert all(report.lengths[p] <= 6.0 for p in waiting), {p: report.lengths[p] for p in waiting}
