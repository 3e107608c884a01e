"""SMS templates: the packaged folder, the checks at load time, the limits at render time."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from case_bridge.workflow import STATES
from sms.segment import count_parts
from sms.templates import (
    KIND_VALUES,
    KINDS,
    MAX_PARTS,
    PACKAGED_DIR,
    SAMPLE_VALUES,
    SIGNATURE,
    Rendered,
    TemplateError,
    case_values,
    clean_value,
    clip,
    format_deadline,
    load_templates,
)

SIG = "【12319城建热线】"
NUMBER = "E0102202611230001"


@pytest.fixture(scope="module")
def templates():
    return load_templates(PACKAGED_DIR)


@pytest.fixture
def folder(tmp_path) -> Path:
    """A copy of the packaged templates to break."""
    target = tmp_path / "sms_templates"
    shutil.copytree(PACKAGED_DIR, target)
    return target


def sample(kind: str) -> dict[str, str]:
    return {name: SAMPLE_VALUES[name] for name in KIND_VALUES[kind]}


def test_required_kinds_and_limits():
    assert set(KINDS) == {"receipt", "dispatched", "result", "survey", "urge", "progress", "not_found",
                          "opt_out", "report_ack", "reply"}
    assert {k for k, n in MAX_PARTS.items() if n == 1} == {"receipt", "progress", "survey", "not_found", "opt_out"}
    assert {n for k, n in MAX_PARTS.items()} == {1, 3}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_within_its_limit_with_the_signature_once(templates, kind):
    out = templates.render(kind, **sample(kind))
    assert isinstance(out, Rendered)
    assert out.text.startswith(SIG)
    assert out.text.count("【") == out.text.count("】") == 1
    assert out.text.strip() == out.text and "\n" not in out.text
    assert out.parts == count_parts(out.text) <= MAX_PARTS[kind]
    if MAX_PARTS[kind] == 1:
        assert out.units <= 70
    for name in KIND_VALUES[kind]:
        assert SAMPLE_VALUES[name] in out.text


def test_texts_say_what_they_should(templates):
    receipt = templates.render("receipt", number=NUMBER).text
    assert NUMBER in receipt and "查询" in receipt and "受理" in receipt
    survey = templates.render("survey", number=NUMBER).text
    assert "回复1满意、2基本满意、3不满意" in survey
    progress = templates.render("progress", number=NUMBER, state=STATES["in_progress"], unit="福田区城市管理指挥中心")
    assert "处置中" in progress.text and "福田区城市管理指挥中心" in progress.text
    ack = templates.render("report_ack", reference="DX202611230007").text
    assert "受理编号DX202611230007" in ack
    dispatched = templates.render("dispatched", number=NUMBER, unit="南山区城市管理指挥中心", deadline="11月25日 18:00")
    assert "南山区城市管理指挥中心" in dispatched.text and "11月25日 18:00" in dispatched.text
    urge = templates.render("urge", number=NUMBER, unit="南山区城市管理指挥中心", deadline="11月25日 18:00").text
    assert "催办" in urge and NUMBER in urge


def test_optional_values_may_be_empty(templates):
    assert templates.render("result", number=NUMBER, result="").text == f"{SIG}编号{NUMBER}的问题已办结。"
    assert "办理结果：已清理" in templates.render("result", number=NUMBER, result="已清理").text
    assert "时限" not in templates.render("dispatched", number=NUMBER, unit="南山区", deadline="").text
    assert "承办单位" not in templates.render("progress", number=NUMBER, state="立案", unit="").text
    assert templates.render("opt_out").parts == 1


def test_not_found_is_the_same_for_any_case(templates):
    """It must not tell 'no such case' from 'someone else's case': the text depends only on what was asked."""
    a = templates.render("not_found", asked=NUMBER).text
    assert a == f"{SIG}未查到本号码反映的编号为{NUMBER}的问题，请核对编号后重试，或致电12319。"
    assert templates.render("not_found", asked="").text == f"{SIG}未查到本号码反映的问题，请核对编号后重试，或致电12319。"
    # whatever a sender types as the number, the reply stays one part
    assert templates.render("not_found", asked="X" * 500).parts == 1


def test_realistic_single_part_values_fit(templates):
    longest_unit = "深圳市福田区城市管理和综合执法局"  # 16 characters
    for state in STATES.values():
        assert templates.render("progress", number=NUMBER, state=state, unit=longest_unit).parts == 1
    assert templates.render("receipt", number="C01012026112399999").parts == 1


def test_too_long_value_raises_naming_kind_length_and_limit(templates):
    with pytest.raises(TemplateError) as err:
        templates.render("progress", number=NUMBER, state="处置中", unit="某某" * 20)
    message = str(err.value)
    assert "'progress'" in message and "88 UCS-2 code units" in message and "2 parts" in message
    assert "limit" in message and "1 part" in message and "70 code units" in message
    assert err.value.kind == "progress"
    with pytest.raises(TemplateError, match=r"'report_ack'.*over the limit.*3 parts \(201 code units\)"):
        templates.render("report_ack", reference="号" * 300)


def test_long_result_is_clipped_to_fit(templates):
    out = templates.render("result", number=NUMBER, result="经现场核查，" + "已清理完毕" * 100)
    assert out.parts <= 3 and out.text.endswith("…")


def test_missing_value_and_unknown_kind(templates):
    with pytest.raises(TemplateError, match=r"'receipt'.*'number' is undefined"):
        templates.render("receipt")
    with pytest.raises(TemplateError, match="unknown SMS template kind 'reciept'"):
        templates.render("reciept", number=NUMBER)


def test_values_are_plain_text_cleaned(templates):
    text = templates.render("progress", number=NUMBER, state="处置中", unit="<b>福田&区</b>\n\t 指挥\u200b中心\x07").text
    assert "<b>福田&区</b> 指挥中心" in text  # no HTML escaping; whitespace collapsed; controls gone
    assert "&amp;" not in text and "\n" not in text and "\x07" not in text and "\u200b" not in text
    # a value cannot add a second signature
    text = templates.render("result", number=NUMBER, result="【已处理】井盖已更换").text
    assert len(SIGNATURE.findall(text)) == 1 and "[已处理]井盖已更换" in text
    assert clean_value(None) == "" and clean_value("  a \u3000 b  ") == "a b" and clean_value(17) == "17"


def test_clip_counts_code_units_and_keeps_pairs():
    assert clip("abc", 5) == "abc"
    assert clip("abcdef", 4) == "abc…"
    assert clip("\U0001F600" * 5, 4) == "\U0001F600…"  # 3 units left: one pair, not a half
    assert clip("城" * 10, 10) == "城" * 10


def test_case_values_from_a_case_like_object():
    @dataclass
    class FakeCase:
        number: str
        state: str
        due_at: datetime | None

    case = FakeCase(NUMBER, "in_progress", datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    values = case_values(case, STATES, "福田区城市管理指挥中心")
    assert values == {"number": NUMBER, "state": "处置中", "unit": "福田区城市管理指挥中心",
                      "deadline": "11月25日 18:00", "result": ""}
    bare = case_values(FakeCase(NUMBER, "filed", None), STATES, None, result="已处理")
    assert bare["deadline"] == "" and bare["unit"] == "" and bare["state"] == "立案" and bare["result"] == "已处理"
    assert format_deadline(datetime(2026, 1, 5, 1, 30)) == "1月5日 09:30"  # naive = UTC


def test_case_values_render_every_kind(templates):
    @dataclass
    class FakeCase:
        number: str
        state: str
        due_at: datetime | None

    values = case_values(FakeCase(NUMBER, "dispatched", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
                         STATES, "南山区城市管理指挥中心", result="已修复")
    for kind in ("receipt", "dispatched", "result", "survey", "urge", "progress"):
        assert templates.render(kind, **values).text.startswith(SIG)


# ---------------------------------------------------------------- the folder and its checks
def test_default_folder_is_packaged_and_the_setting_replaces_it(folder, monkeypatch):
    assert load_templates().folder == PACKAGED_DIR
    (folder / "_base.txt").write_text("【珠海12319】{% block body %}{% endblock %}\n", encoding="utf-8")
    monkeypatch.setenv("HOTLINE_SMS_TEMPLATES_DIR", str(folder))
    from hotline.settings import get_settings
    get_settings.cache_clear()
    loaded = load_templates()
    assert loaded.folder == folder
    assert loaded.render("receipt", number=NUMBER).text.startswith("【珠海12319】")


def test_missing_kind_names_the_file(folder):
    (folder / "survey.txt").unlink()
    with pytest.raises(TemplateError, match=r"lacks survey\.txt"):
        load_templates(folder)


def test_syntax_error_names_the_file_and_line(folder):
    (folder / "urge.txt").write_text('{% extends "_base.txt" %}\n{% block body %}催办 {{ number }{% endblock %}\n',
                                     encoding="utf-8")
    with pytest.raises(TemplateError, match=r"urge\.txt: line 2") as err:
        load_templates(folder)
    assert err.value.path == folder / "urge.txt"


def test_broken_base_names_the_base(folder):
    (folder / "_base.txt").write_text("【12319城建热线】{% block body %}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"_base\.txt"):
        load_templates(folder)


def test_unknown_variable_names_the_file(folder):
    (folder / "receipt.txt").write_text('{% extends "_base.txt" %}{% block body %}编号{{ numbr }}{% endblock %}',
                                        encoding="utf-8")
    with pytest.raises(TemplateError, match=r"receipt\.txt: 'numbr' is undefined; the values of 'receipt' are: number"):
        load_templates(folder)


def test_missing_signature_names_the_file(folder):
    (folder / "opt_out.txt").write_text("退订成功。", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"opt_out\.txt: the text must start with the signature"):
        load_templates(folder)
    (folder / "opt_out.txt").write_text('{% extends "_base.txt" %}{% block body %}【退订】成功{% endblock %}',
                                        encoding="utf-8")
    with pytest.raises(TemplateError, match=r"opt_out\.txt.*2 signature"):
        load_templates(folder)


def test_too_long_template_names_the_file(folder):
    (folder / "survey.txt").write_text('{% extends "_base.txt" %}{% block body %}{{ number }}' + "请评价" * 20
                                       + "{% endblock %}", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"survey\.txt: with sample values the text is \d+ UCS-2 code units"):
        load_templates(folder)


def test_not_utf8_names_the_file(folder):
    (folder / "result.txt").write_bytes("【12319城建热线】已办结".encode("gbk"))
    with pytest.raises(TemplateError, match=r"result\.txt: not UTF-8"):
        load_templates(folder)


def test_unknown_file_is_reported(folder):
    (folder / "reciept.txt").write_text("【12319城建热线】x", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"reciept\.txt is no known kind"):
        load_templates(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        load_templates(tmp_path / "nowhere")


def test_sandbox_refusal_names_the_file(folder):
    (folder / "receipt.txt").write_text(
        '{% extends "_base.txt" %}{% block body %}{{ number.__class__.__mro__ }}{% endblock %}', encoding="utf-8")
    with pytest.raises(TemplateError, match=r"receipt\.txt"):
        load_templates(folder)
