"""Cases in the browser: `/cases` (search with paging) and `/cases/{number}` (everything about one
case, and the actions the viewer's role may take now). A case outside the viewer's scope is
answered exactly like one that does not exist (404)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select

import ivr
import sms
from agent_ui import pages
from agent_ui.maps import district_map_svg
from agent_ui.models import AgentState
from agent_ui.session import Person, SignedIn
from case_bridge import (NO_NUL, STATES, TRANSITIONS, ActionIn, CaseInputError, CaseNotFound, CatalogueError,
                         WorkflowError, require)

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 30
Number = Annotated[str, Path(max_length=24, pattern=NO_NUL)]
HEARS_EVERY_CALL = frozenset({"supervisor", "admin"})


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise HTTPException(422, f"日期 {value!r} 应为 YYYY-MM-DD") from None


@router.get("/cases", response_class=HTMLResponse)
def case_list(request: Request, person: Person, q: Annotated[str, Query(max_length=100)] = "",
              state: Annotated[str, Query(max_length=12)] = "", district: Annotated[str, Query(max_length=6)] = "",
              since: Annotated[str, Query(max_length=10)] = "", until: Annotated[str, Query(max_length=10)] = "",
              page: Annotated[int, Query(ge=1, le=100000)] = 1):
    pages.need(person, "case.read")
    core, zone = request.app.state.core, request.app.state.settings.zone
    start, end = _day(since), _day(until)
    with request.app.state.db.read_session() as s:
        found, total = core.search_cases(
            s, person.actor, q.replace("\x00", ""), state if state in STATES else None,
            district if district.isdigit() else None,
            datetime.combine(start, time(), zone) if start else None,
            datetime.combine(end + timedelta(days=1), time(), zone) if end else None,
            PAGE_SIZE, (page - 1) * PAGE_SIZE)
        rows = [{"case": c, "light": core.light(c), "category": core.catalogue.get(c.category_key).name
                 if c.category_key in core.catalogue else ""} for c in found]
    gz = core.router.gazetteer
    districts = [(code, gz.divisions[code].name) for code in gz.district_codes]
    ctx = pages.context(request, person, "cases", rows=rows, total=total, page_no=page,
                        pages_count=max(1, -(-total // PAGE_SIZE)), q=q, state=state, district=district,
                        since=since, until=until, districts=districts, lights=pages.LIGHTS)
    return pages.render(request, "cases/list.html", ctx)


def may_hear(request: Request, person: SignedIn, call) -> bool:
    """Supervisors and administrators hear every recording; an agent only the calls it took
    (its phone was this call's agent while it was signed in to that phone)."""
    if person.role in HEARS_EVERY_CALL:
        return True
    if person.role != "agent" or not call.agent or not call.agent.startswith("PJSIP/"):
        return False
    extension = call.agent.removeprefix("PJSIP/")
    at = call.answered_at or call.started_at or call.updated_at
    with request.app.state.db.read_session() as s:
        return s.scalar(select(AgentState.id).where(
            AgentState.user_id == person.user_id, AgentState.extension == extension, AgentState.started_at <= at,
            (AgentState.ended_at.is_(None)) | (AgentState.ended_at >= at)).limit(1)) is not None


def case_view(request: Request, person: SignedIn, number: str) -> dict[str, Any]:
    app = request.app
    core = app.state.core
    with app.state.db.read_session() as s:
        try:
            case = core.get_case(s, number, person.actor)
        except CaseNotFound:
            raise HTTPException(404, f"没有案件 {number}") from None
        out = core.to_out(s, case, person.actor)
        calls = ivr.calls_of_case(s, case.id)
        thread = sms.messages_of_case(s, case.id)
        effects = core.effects(s, case)
        units = core.units(s)
        route = core.router.route(case)
        minutes_left = core.minutes_left(case)
        repeats = core.possible_repeats(s, person.actor, case.category_key, case.grid_code, case.lon, case.lat)
    gz = core.router.gazetteer
    names = gz.divisions
    placement = next((e.data.get("placement") for e in out.timeline if e.action == "create"), None) or {}
    return {"case": out, "calls": [{"call": c, "hear": may_hear(request, person, c)} for c in calls],
            "thread": thread, "effects": effects, "units": units, "route": route, "minutes_left": minutes_left,
            "placement": placement, "names": names, "lights": pages.LIGHTS,
            "repeats": [(c.number, why) for c, why in repeats if c.number != out.number],
            "map": district_map_svg(gz, out.district_code, (out.lon, out.lat) if out.lon is not None else None),
            "actions": [(a, TRANSITIONS[a]) for a in out.allowed_actions], "event_labels": pages.EVENT_LABELS,
            "district_units": sorted(units.values(), key=lambda u: u.code)}


@router.get("/cases/{number}", response_class=HTMLResponse)
def case_page(request: Request, person: Person, number: Number):
    pages.need(person, "case.read")
    return pages.render(request, "cases/case.html", pages.context(request, person, "cases",
                                                                   **case_view(request, person, number)))


@router.post("/cases/{number}/actions/{action}", response_class=HTMLResponse)
def act(request: Request, person: Person, number: Number, action: Annotated[str, Path(max_length=24)],
        note: Annotated[str, Form(max_length=2000)] = "", unit_code: Annotated[str, Form(max_length=32)] = "",
        minutes: Annotated[str, Form(max_length=8)] = "", answer: Annotated[str, Form(max_length=4)] = "",
        duplicate_of: Annotated[str, Form(max_length=24)] = ""):
    pages.need(person, "case.read")
    if action not in TRANSITIONS:
        raise HTTPException(404, f"没有操作 {action}")
    core, error = request.app.state.core, ""
    try:
        params = ActionIn(note=note, unit_code=unit_code or None, minutes=int(minutes) if minutes.isdigit() else None,
                          answer=answer or None, duplicate_of=duplicate_of or None)
        with request.app.state.db.session() as s:
            try:
                core.get_case(s, number, person.actor)
            except CaseNotFound:
                raise HTTPException(404, f"没有案件 {number}") from None
            case = core.apply_action(s, number, action, person.actor, params)
            state, unit = case.state, case.handling_unit_code
    except ValidationError as exc:
        error = "；".join(str(e.get("msg")) for e in exc.errors())
    except (WorkflowError, CaseInputError, CatalogueError) as exc:
        error = f"{TRANSITIONS[action].label}未执行：{exc}"
    if error:
        ctx = pages.context(request, person, "cases", **case_view(request, person, number), error=error)
        return pages.render(request, "cases/case.html", ctx, status=409)
    from anyio import from_thread
    from_thread.run(request.app.state.bus.publish, f"case.{action}", {"number": number, "state": state,
                                                                     "by": person.username, "handling_unit": unit})
    return RedirectResponse(f"/cases/{number}", status_code=303)


@router.get("/cases/{number}/calls/{uniqueid}/recording")
def recording(request: Request, person: Person, number: Number,
              uniqueid: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]):
    """A call's recording, to those allowed to hear it; a path outside the spool is never served."""
    pages.need(person, "case.read")
    view_calls = case_view(request, person, number)["calls"]
    entry = next((c for c in view_calls if c["call"].uniqueid == uniqueid), None)
    if entry is None:
        raise HTTPException(404, "没有这通电话")
    if not entry["hear"]:
        raise HTTPException(403, "您无权收听此录音")
    path = ivr.recording_file(entry["call"], request.app.state.settings.asterisk_spool_dir)
    if path is None:
        raise HTTPException(404, "录音文件不存在")
    require(person.actor, "case.read")
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, no-store"})
