"""The call flows, written as the call script reads.

`inbound` answers a citizen calling 12319 (intents: report, progress→done, consult, agent, and
closed outside `agent_hours`); `survey` asks a citizen called back about a closed
case. Each flow reads keys through the `AGICall`, asks the case core through `IVRServices`
(never touching the database itself), and keeps what it learned in a `CallNotes` that is
saved in a `finally` — so a caller who hangs up at any point leaves a complete record of how
far they got. A hangup surfaces as `CallerHungUp` from the next command and ends the flow.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ivr.agi import PromptFailed
from ivr.call_types import CallNotes

if TYPE_CHECKING:
    from ivr.agi import AGICall
    from ivr.services import IVRServices

log = logging.getLogger(__name__)

# the FastAGI routes Asterisk calls: agi://<host>:<port>/<route>
AGI_ROUTES = ("inbound", "survey")

MENU = {"1": "report", "2": "progress", "3": "consult", "0": "agent"}
SURVEY_KEYS = {"1": "满意", "2": "基本满意", "3": "不满意"}
MENU_TRIES = 3
CASE_DIGITS_MAX = 20


# keys that stop a prompt: the caller who knows the menu need not hear it out
KEYS = "0123456789*#"


async def ask(call: "AGICall", svc: "IVRServices", prompt: str, max_digits: int, notes: CallNotes,
              timeout: float | None = None, first: str = "") -> tuple[str, bool]:
    """Play `prompt` and read up to max_digits keys. `first` is a key pressed during the prompts
    before it (the caller already chose); a prompt Asterisk cannot play still reads the keys."""
    timeout_ms = int((timeout or svc.menu_timeout) * 1000)
    if first:
        digits, timed_out = await call.wait_digits(timeout_ms, max_digits, first=first) \
            if max_digits > 1 else (first if first != "#" else "", False)
    elif not svc.prompt_ready(prompt):
        digits, timed_out = await call.wait_digits(timeout_ms, max_digits)
    else:
        try:
            digits, timed_out = await call.get_data(svc.prompt(prompt), timeout_ms, max_digits)
        except PromptFailed:
            svc.prompt_failed(prompt)
            digits, timed_out = await call.wait_digits(timeout_ms, max_digits)
    early = "(early)" if first else ""
    notes.keys.append(f"{prompt}:{digits}{'' if not timed_out or digits else '(timeout)'}{early}")
    return digits, timed_out


async def play(call: "AGICall", svc: "IVRServices", *prompts: str, listen: bool = False) -> str:
    """Play prompts in turn. With `listen`, a key stops them and is returned (else "")."""
    for prompt in prompts:
        if not svc.prompt_ready(prompt):
            continue
        try:
            key = await call.stream(svc.prompt(prompt), KEYS if listen else "")
        except PromptFailed:
            svc.prompt_failed(prompt)
            continue
        if key:
            return key
    return ""


async def play_digits(call: "AGICall", svc: "IVRServices", digits: str, listen: bool = False) -> str:
    return await play(call, svc, *(f"digit_{d}" for d in digits if d.isdigit()), listen=listen)


# ---------------------------------------------------------------------------------- inbound
async def inbound(call: "AGICall", svc: "IVRServices") -> None:
    """Welcome, menu, progress query, optional district choice; the dialplan queues the call."""
    notes = CallNotes()
    caller = svc.caller_number(call.caller)
    await svc.call_started(call, caller, direction="in")
    try:
        await call.answer()
        await play(call, svc, "recording_notice")          # heard in full: the caller must know
        pressed = await play(call, svc, "welcome", listen=True)
        if caller and await svc.has_open_cases(caller):
            notes.facts["open_cases"] = True
            pressed = pressed or await play(call, svc, "open_cases", listen=True)
        notes.intent = await main_menu(call, svc, notes, first=pressed)
        if notes.intent == "progress":
            notes.intent = await progress(call, svc, caller, notes)
        if notes.intent in ("report", "consult", "agent") and not svc.agents_on_duty():
            notes.intent = "closed"   # the dialplan says so and offers to take a message
        if notes.intent in ("report", "consult", "agent") and svc.district_menu:
            await choose_district(call, svc, notes)
        if notes.intent not in ("done", "closed"):
            notes.queue = notes.queue or svc.city_queue
        await call.set_variable("HOTLINE_INTENT", notes.intent)
        await call.set_variable("HOTLINE_QUEUE", notes.queue or "")
        await call.set_variable("HOTLINE_CASE", notes.asked_case or "")
        await call.set_variable("HOTLINE_DISTRICT", notes.district_code or "")
        if notes.queue:
            await play(call, svc, "transfer_agent")
    finally:
        await svc.call_notes(call.uniqueid, notes)


async def main_menu(call: "AGICall", svc: "IVRServices", notes: CallNotes, first: str = "") -> str:
    for attempt in range(MENU_TRIES):
        key, timed_out = await ask(call, svc, "menu", 1, notes, first=first if attempt == 0 else "")
        if key in MENU:
            return MENU[key]
        if timed_out and not key:
            return "agent"   # no input: a person takes the call
        if attempt < MENU_TRIES - 1:
            await play(call, svc, "invalid")
    return "agent"


async def progress(call: "AGICall", svc: "IVRServices", caller: str | None, notes: CallNotes) -> str:
    """Key a case number (its digits) or # for the latest; hear its state. Returns the next intent."""
    digits, timed_out = await ask(call, svc, "progress_enter", CASE_DIGITS_MAX, notes, timeout=10)
    if timed_out and not digits:
        return "agent"
    if not digits.isdigit() and digits:
        await play(call, svc, "invalid")
        return "agent"
    case = await svc.find_case(caller, digits or None)
    notes.facts["progress_query"] = digits or "#"
    pressed = ""
    if case is None:
        pressed = await play(call, svc, "progress_not_found" if digits else "progress_none", listen=True)
    else:
        notes.asked_case = case.number
        notes.facts["progress_state"] = case.state
        pressed = (await play(call, svc, "case_number", listen=True)
                   or await play_digits(call, svc, case.digits, listen=True)
                   or await play(call, svc, "case_state_is", f"state_{case.state}", listen=True))
    key, _ = await ask(call, svc, "more_help", 1, notes, first=pressed)
    if key == "0":
        return "agent"
    await play(call, svc, "goodbye")
    return "done"


async def choose_district(call: "AGICall", svc: "IVRServices", notes: CallNotes) -> None:
    codes = svc.district_menu
    width = len(str(len(codes)))
    pressed = await play(call, svc, "district_menu", listen=True)
    for n, code in enumerate(codes, 1):
        if pressed:
            break
        pressed = (await play(call, svc, f"district_{code}", "press", listen=True)
                   or await play_digits(call, svc, str(n).zfill(width), listen=True))
    key, _ = await ask(call, svc, "press", width, notes, timeout=svc.menu_timeout, first=pressed)
    if key.isdigit() and 1 <= int(key) <= len(codes):
        notes.district_code = codes[int(key) - 1]
        notes.queue = svc.district_queue(notes.district_code)


# ----------------------------------------------------------------------------------- survey
async def survey(call: "AGICall", svc: "IVRServices") -> None:
    """A satisfaction callback: which case, one key, recorded; 不满意 asks the dispatcher to reopen."""
    notes = CallNotes(intent="survey")
    number = await call.get_variable("HOTLINE_CASE")
    notes.asked_case = number
    callback_key = await call.get_variable("HOTLINE_SURVEY_KEY")
    await svc.call_started(call, svc.caller_number(call.caller), direction="survey")
    try:
        # only with the single-use key of a callback we placed; the call is then recorded with the
        # citizen's number and the case, not the 12319 caller ID we sent
        case = await svc.redeem_survey(number, callback_key, call.uniqueid)
        notes.facts["survey_key"] = "accepted" if case is not None else ("refused" if callback_key else "missing")
        if case is None:
            log.warning("survey call %s: no case %r awaiting a survey with this callback key", call.uniqueid, number)
            await play(call, svc, "goodbye")
            return
        pressed = (await play(call, svc, "survey_intro", "case_number", listen=True)
                   or await play_digits(call, svc, case.digits, listen=True))
        answer = None
        for attempt in range(2):   # the question is repeated once on a wrong key or silence
            key, _ = await ask(call, svc, "survey_question", 1, notes, timeout=8,
                               first=pressed if attempt == 0 else "")
            answer = SURVEY_KEYS.get(key)
            if answer or attempt == 1:
                break
            await play(call, svc, "invalid")
        notes.facts["answer"] = answer
        if answer is None:
            await play(call, svc, "goodbye")
            return
        await svc.record_satisfaction(case.number, answer, call.uniqueid)
        await play(call, svc, "survey_reopen" if answer == "不满意" else "survey_thanks")
    finally:
        await svc.call_notes(call.uniqueid, notes)
