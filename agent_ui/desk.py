"""The seat agent's desk (`/desk`): one long-lived page — the phone and seat state, the screen pop
of the call being taken, the new-case form with live placement, category picker, repeats and
standard answers, one-click transfer. The unsaved form is kept on the server per call
(`desk_drafts`), so a reload, a crashed browser or another PC finds the same call and the same
form."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import delete
from starlette.concurrency import run_in_threadpool

import ivr
from agent_ui import pages
from agent_ui.maps import district_map_svg
from agent_ui.models import DeskDraft
from agent_ui.seat import STATE_LABELS, SeatError
from agent_ui.session import Person, SignedIn, set_extension
from case_bridge import (OPEN_STATES, CaseInputError, CatalogueError, IdempotencyConflict, NewCase, WorkflowError,
                         require)
from hotline import clock
from hotline.phone import describe

router = APIRouter(include_in_schema=False)
REPEAT_DAYS = 7
DRAFT_FIELDS = ("caller_phone", "caller_name", "address_text", "category_key", "category_label", "request_type",
                "urgency", "description", "answer", "form_key", "district_code", "place_confirmed")
Text = Annotated[str, Form(max_length=20000)]
Short = Annotated[str, Form(max_length=300)]


def _desk_person(person: SignedIn) -> None:
    if person.role != "agent":
        raise HTTPException(403, "坐席工作台仅供坐席员使用")


# ---------------------------------------------------------------------------- the call panel
def call_view(request: Request, person: SignedIn, uniqueid: str, caller: str | None = None,
              ivr_vars: dict | None = None, answered_at=None) -> dict[str, Any]:
    """Everything the screen pop shows: the number and where it is from, the IVR choices, how often
    it called, its earlier cases (open first)."""
    app = request.app
    core, settings = app.state.core, app.state.settings
    with app.state.db.read_session() as s:
        call = ivr.get_call(s, uniqueid)
        caller = caller or (call.caller if call else None)
        facts = describe(caller, settings.phone_region)
        recent = ivr.calls_from(s, facts.e164, clock.now() - timedelta(days=REPEAT_DAYS)) if facts.e164 else 0
        cases = core.list_cases(s, person.actor, phone=facts.e164, limit=20) if facts.e164 else []
        earlier = sorted(({"number": c.number, "state": c.state, "state_label": pages.STATES[c.state],
                           "open": c.state in OPEN_STATES, "description": c.description[:60],
                           "created_at": c.created_at} for c in cases),
                         key=lambda c: (not c["open"], -c["created_at"].timestamp()))
    noted = dict(call.ivr or {}) if call else {}
    vars_ = ivr_vars or {}
    intent = (call.intent if call else None) or vars_.get("HOTLINE_INTENT") or noted.get("intent")
    district = (call.district_code if call else None) or vars_.get("HOTLINE_DISTRICT") or None
    names = core.router.gazetteer.divisions
    return {"uniqueid": uniqueid, "facts": facts, "repeat_calls": recent, "earlier": earlier,
            "intent": pages.INTENTS.get(intent or "", intent or ""),
            "asked_case": (call.asked_case if call else None) or vars_.get("HOTLINE_CASE") or "",
            "district": names[district].name if district in names else (district or ""),
            "queue": (call.queue if call else None) or "",
            "answered_at": answered_at or clock.now()}


def current_call(request: Request, person: SignedIn) -> dict[str, Any] | None:
    """The call this agent's phone is in now: from the PBX link of this process, else the call records."""
    if not person.extension:
        return None
    telephony = getattr(request.app.state, "telephony", None)
    live = telephony.live_call_of(person.extension) if telephony is not None else None
    if live is not None:
        answered = datetime.fromisoformat(live["answered_at"]) if live.get("answered_at") else None
        return call_view(request, person, live["uniqueid"], live.get("caller"), live.get("variables"), answered)
    with request.app.state.db.read_session() as s:
        row = ivr.current_call_of(s, f"PJSIP/{person.extension}", clock.now() - timedelta(hours=4))
    return call_view(request, person, row.uniqueid, answered_at=row.updated_at) if row is not None else None


# ---------------------------------------------------------------------------- drafts
def load_draft(request: Request, person: SignedIn, uniqueid: str) -> dict[str, Any]:
    with request.app.state.db.read_session() as s:
        row = s.get(DeskDraft, (person.user_id, uniqueid))
        data = dict(row.data) if row else {}
    data.setdefault("form_key", secrets.token_urlsafe(12))
    return data


def save_draft(request: Request, person: SignedIn, uniqueid: str, data: dict[str, Any]) -> None:
    with request.app.state.db.session() as s:
        row = s.get(DeskDraft, (person.user_id, uniqueid))
        if row is None:
            s.add(DeskDraft(user_id=person.user_id, call_uniqueid=uniqueid, data=data, updated_at=clock.now()))
        else:
            row.data, row.updated_at = data, clock.now()


def clear_draft(request: Request, person: SignedIn, uniqueid: str) -> None:
    with request.app.state.db.session() as s:
        s.execute(delete(DeskDraft).where(DeskDraft.user_id == person.user_id, DeskDraft.call_uniqueid == uniqueid))


def form_view(request: Request, person: SignedIn, call: dict[str, Any] | None) -> dict[str, Any]:
    uniqueid = call["uniqueid"] if call else ""
    draft = load_draft(request, person, uniqueid)
    if call and not draft.get("caller_phone") and call["facts"].e164:
        draft["caller_phone"] = call["facts"].display
    return {"draft": draft, "call_uniqueid": uniqueid, "request_types": pages.REQUEST_TYPES,
            "urgencies": pages.URGENCIES}


# ---------------------------------------------------------------------------- the page
def seat_view(request: Request, person: SignedIn) -> dict[str, Any]:
    app = request.app
    seat = app.state.seats.current(person.user_id)
    telephony = getattr(app.state, "telephony", None)
    phone = telephony.agent_phone(person.extension) if telephony is not None and person.extension else None
    return {"seat": seat, "phone": phone, "state_labels": STATE_LABELS,
            "wrapup_seconds": app.state.settings.queue_wrapup_seconds,
            "pause_reasons": app.state.settings.pause_reasons}


@router.get("/desk", response_class=HTMLResponse)
def desk(request: Request, person: Person):
    _desk_person(person)
    call = current_call(request, person)
    form = form_view(request, person, call)
    ctx = pages.context(request, person, "desk", call=call, **seat_view(request, person), **form,
                        **draft_placement(request, person, form["draft"]),
                        shortcuts=SHORTCUTS, extensions=request.app.state.settings.agent_extensions)
    return pages.render(request, "desk/desk.html", ctx)


SHORTCUTS = [("Alt+R", "就绪"), ("Alt+P", "小休"), ("Alt+W", "结束话后处理"), ("Alt+N", "新建案件（以当前来电）"),
             ("Alt+A", "地址"), ("Alt+C", "类别"), ("Alt+K", "知识库"), ("Ctrl+Enter", "提交案件"),
             ("Alt+T", "转接区级队列")]


@router.post("/desk/extension", response_class=HTMLResponse)
def choose_extension(request: Request, person: Person, extension: Annotated[str, Form(max_length=16)]):
    _desk_person(person)
    if extension not in request.app.state.settings.agent_extensions:
        raise HTTPException(422, "不是本热线的坐席分机")
    if request.app.state.seats.user_on_extension(extension) not in (None, person.user_id):
        raise HTTPException(409, f"分机 {extension} 已有其他坐席签入")
    set_extension(request.app.state.db, person, extension)
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.post("/desk/state", response_class=HTMLResponse)
def change_state(request: Request, person: Person, state: Annotated[str, Form(max_length=12)],
                 reason: Annotated[str, Form(max_length=40)] = ""):
    _desk_person(person)
    require(person.actor, "agent.pause")
    if not person.extension:
        raise HTTPException(409, "请先选择分机")
    error = ""
    try:
        from_thread.run(request.app.state.seats.change, person.user_id, person.extension, state, reason)
    except SeatError as exc:
        error = str(exc)
    ctx = pages.context(request, person, "desk", error=error, **seat_view(request, person))
    return pages.render(request, "desk/_seat.html", ctx, status=200 if not error else 409)


@router.get("/desk/form", response_class=HTMLResponse)
def new_form(request: Request, person: Person, call: Annotated[str, Query(max_length=64)] = ""):
    """The new-case form, pre-filled from the call (its number and uniqueid) and its draft."""
    _desk_person(person)
    view = call_view(request, person, call) if call else None
    form = form_view(request, person, view)
    ctx = pages.context(request, person, "desk", **form, **draft_placement(request, person, form["draft"]), oob=True)
    return pages.render(request, "desk/_form.html", ctx)


def draft_placement(request: Request, person: SignedIn, draft: dict[str, Any]) -> dict[str, Any]:
    """The placement panel for a form that comes back with an address (a reload, a draft)."""
    chosen = draft.get("district_code") if draft.get("place_confirmed") == "1" else None
    return placement_view(request, person, draft.get("address_text") or "", draft.get("category_key") or None,
                          chosen or None)


# ---------------------------------------------------------------------------- as the agent types
def placement_view(request: Request, person: SignedIn, address: str, category_key: str | None,
                   chosen: str | None) -> dict[str, Any]:
    core = request.app.state.core
    router_ = core.router
    with request.app.state.db.read_session() as s:
        placement = router_.locate(s, address) if address.strip() else None
        district = chosen or (placement.district_code if placement else None)
        names = router_.gazetteer.divisions
        route = router_.rules.route(district, placement.street_code if placement and not chosen else None,
                                    category_key) if district else None
        units = core.units(s) if route and route.unit_code else {}
        point = placement.point if placement and not chosen else None
        repeats = core.possible_repeats(s, person.actor, category_key, placement.grid_code if placement else None,
                                        point[0] if point else None, point[1] if point else None) if category_key else []
    confident = bool(chosen) or (placement is not None and placement.confident(router_.threshold))
    return {"placement": placement, "address": address, "chosen": chosen, "district": district,
            "district_name": names[district].name if district in names else "", "names": names,
            "confident": confident, "threshold": router_.threshold, "route": route,
            "route_unit": units[route.unit_code].name if route and route.unit_code in units else "",
            "map": district_map_svg(router_.gazetteer, district, point),
            "repeats": [{"number": c.number, "why": why, "state_label": pages.STATES[c.state],
                         "description": c.description[:60]} for c, why in repeats]}


@router.get("/desk/place", response_class=HTMLResponse)
def place(request: Request, person: Person, address_text: Annotated[str, Query(max_length=300)] = "",
          category_key: Annotated[str, Query(max_length=5)] = "",
          district_code: Annotated[str, Query(max_length=6)] = "", place_confirmed: Annotated[str, Query(max_length=1)] = ""):
    require(person.actor, "place.locate")
    address_text = address_text.replace("\x00", "")
    chosen = district_code if place_confirmed == "1" and district_code.isdigit() and len(district_code) == 6 else None
    ctx = pages.context(request, person, "desk", fragment=True,
                        **placement_view(request, person, address_text, category_key or None, chosen))
    return pages.render(request, "desk/_placement.html", ctx)


@router.get("/desk/categories", response_class=HTMLResponse)
def categories(request: Request, person: Person, q: Annotated[str, Query(max_length=40)] = ""):
    require(person.actor, "case.create")
    found = request.app.state.category_index.search(q.replace("\x00", ""))
    return pages.render(request, "desk/_categories.html", pages.context(request, person, "desk", options=found, q=q))


@router.get("/desk/suggest", response_class=HTMLResponse)
def suggest(request: Request, person: Person, description: Annotated[str, Query(max_length=20000)] = ""):
    require(person.actor, "case.create")
    found = request.app.state.category_index.suggest(description.replace("\x00", "")) if description.strip() else []
    return pages.render(request, "desk/_suggest.html", pages.context(request, person, "desk", options=found))


@router.get("/desk/knowledge", response_class=HTMLResponse)
def knowledge(request: Request, person: Person, q: Annotated[str, Query(max_length=100)] = ""):
    require(person.actor, "case.create")
    entries = request.app.state.knowledge.search(q.replace("\x00", ""))
    return pages.render(request, "desk/_knowledge.html", pages.context(request, person, "desk", entries=entries, q=q))


@router.post("/desk/draft")
async def draft(request: Request, person: Person):
    _desk_person(person)
    form = await request.form()
    uniqueid = str(form.get("call_uniqueid") or "")[:64]
    data = {k: str(form.get(k) or "")[:20000] for k in DRAFT_FIELDS}
    await run_in_threadpool(save_draft, request, person, uniqueid, data)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- submit and transfer
@router.post("/desk/case", response_class=HTMLResponse)
def submit(request: Request, person: Person, description: Text = "", caller_phone: Short = "", caller_name: Short = "",
           address_text: Short = "", category_key: Short = "", request_type: Short = "投诉", urgency: Short = "一般",
           answer: Annotated[str, Form(max_length=2000)] = "", form_key: Short = "",
           call_uniqueid: Annotated[str, Form(max_length=64)] = "", district_code: Short = "",
           place_confirmed: Short = ""):
    require(person.actor, "case.create")
    core = request.app.state.core
    chosen = place_confirmed == "1" and bool(district_code)
    key = f"desk:{call_uniqueid or person.user_id}:{form_key or secrets.token_urlsafe(8)}"
    error, case_out, created, effects = "", None, False, []
    try:
        data = NewCase(channel="phone", description=description, caller_phone=caller_phone or None,
                       caller_name=caller_name or None, address_text=address_text, category_key=category_key or None,
                       request_type=request_type, urgency=urgency, answer=answer or None,
                       call_uniqueid=call_uniqueid or None, idempotency_key=key,
                       district_code=district_code if chosen else None, place_confirmed=chosen)
        with request.app.state.db.session() as s:
            result = core.create_case(s, data, person.actor)
            case_out = core.to_out(s, result.case, person.actor, with_timeline=False)
            created = result.created
            effects = core.effects(s, result.case)
            unit = core.units(s).get(case_out.handling_unit) if case_out.handling_unit else None
    except ValidationError as exc:
        error = "；".join(_field_error(e) for e in exc.errors())
    except IdempotencyConflict:
        error = "此表单已提交为案件，内容随后又有改动。请点“新建案件”另起一单。"
    except (CaseInputError, CatalogueError, WorkflowError) as exc:
        error = str(exc)
    if error:
        ctx = pages.context(request, person, "desk", error=error)
        return pages.render(request, "desk/_result.html", ctx, status=422)
    if created:
        clear_draft(request, person, call_uniqueid)
        from_thread.run(request.app.state.bus.publish, "case.created", {
            "number": case_out.number, "state": case_out.state, "by": person.username,
            "handling_unit": case_out.handling_unit, "call_uniqueid": call_uniqueid})
    ctx = pages.context(request, person, "desk", case=case_out, created=created, effects=effects,
                        unit_name=unit.name if unit else "", call_uniqueid=call_uniqueid,
                        district_code=case_out.district_code)
    return pages.render(request, "desk/_result.html", ctx, status=201 if created else 200)


FIELD_NAMES = {"description": "问题描述", "caller_phone": "来电号码", "caller_name": "姓名", "address_text": "地址",
               "category_key": "类别", "request_type": "诉求类型", "urgency": "紧急程度", "answer": "答复"}


def _field_error(err: dict) -> str:
    name = FIELD_NAMES.get(str(err["loc"][0]) if err.get("loc") else "", "表单")
    if err.get("type") in ("string_too_short", "value_error") and name == "问题描述":
        return "请填写问题描述"
    return f"{name}：{err.get('msg')}"


@router.post("/desk/transfer", response_class=HTMLResponse)
def transfer(request: Request, person: Person, call_uniqueid: Annotated[str, Form(max_length=64)] = "",
             route_district: Annotated[str, Form(max_length=6)] = ""):
    require(person.actor, "call.control")
    telephony = getattr(request.app.state, "telephony", None)
    error, queue = "", ""
    if not call_uniqueid:
        error = "当前没有来电可转接"
    elif not (route_district.isdigit() and len(route_district) == 6):
        error = "请先确定所属区（输入地址或选择区），才能转接到该区的队列"
    elif telephony is None or telephony.ami is None:
        error = "本进程未连接交换机，无法转接"
    else:
        try:
            queue = from_thread.run(telephony.transfer_to_district, call_uniqueid, route_district)
        except ivr.AMIError as exc:
            error = f"转接失败：{exc}"
    if queue:
        from_thread.run(request.app.state.bus.publish, "call.transfer_requested",
                        {"uniqueid": call_uniqueid, "queue": queue, "by": person.username})
    ctx = pages.context(request, person, "desk", error=error, queue=queue)
    return pages.render(request, "desk/_transfer.html", ctx, status=409 if error else 200)
