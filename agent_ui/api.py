"""The JSON API (/api/v1): cases with their timeline, workflow actions, links, catalogue,
units and KPIs. Every call acts as the API key's user; a district user sees and acts on
its own unit's cases only."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Callable, Literal

from anyio import from_thread
from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent_ui.auth import api_actor
import ivr
import sms
from case_bridge import (NO_NUL, ActionIn, Case, CaseCore, CaseOut, HandlingUnit, NewCase, dismiss_link, kpi_report,
                         require)
from hotline.accounts import Actor
from ivr import AMIError, AMINotConnected

router = APIRouter(prefix="/api/v1")
ActorDep = Annotated[Actor, Depends(api_actor)]
CaseNumber = Annotated[str, Path(pattern=NO_NUL)]
BAD_BODY = {400: {"description": "the body could not be decoded (not UTF-8)"}}


def _core(request: Request) -> CaseCore:
    return request.app.state.core


def _publish(request: Request, topic: str, data: dict) -> None:
    """Tell the rest of the process (live pages, wallboard) after the change is committed."""
    from_thread.run(request.app.state.bus.publish, topic, data)


@router.post("/cases", tags=["cases"], response_model=CaseOut, status_code=201,
             responses={200: {"description": "the idempotency key was seen before: the existing case"},
                        **BAD_BODY, 401: {}, 403: {}, 409: {}, 422: {}})
def create_case(data: NewCase, request: Request, response: Response, actor: ActorDep,
                idempotency_key: Annotated[str | None, Header(max_length=128)] = None) -> CaseOut:
    """Create a case. Send the same `Idempotency-Key` (header or field) and the same body on a retry to get
    the same case back; the key is yours alone, and the same key with another body is refused (422)."""
    require(actor, "case.create")
    key = data.idempotency_key or idempotency_key
    if key:   # scoped to the user: another user's key never answers with someone else's case
        data = data.model_copy(update={"idempotency_key": f"api:{actor.user_id or actor.username}:{key}"})
    core = _core(request)
    with request.app.state.db.session() as session:
        result = core.create_case(session, data, actor)
        out = core.to_out(session, result.case, actor, fresh=result)
    if result.created:
        _publish(request, "case.created", {"number": out.number, "state": out.state, "by": actor.username,
                                           "handling_unit": out.handling_unit,
                                           "possible_duplicates": result.possible_duplicates})
    else:
        response.status_code = 200
    return out


@router.get("/cases", tags=["cases"], response_model=list[CaseOut], responses={401: {}, 422: {}})
def list_cases(request: Request, actor: ActorDep,
               state: Annotated[str | None, Query(max_length=12, pattern=NO_NUL)] = None,
               district_code: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
               unit_code: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
               phone: Annotated[str | None, Query(max_length=40)] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 50,
               offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[CaseOut]:
    core = _core(request)
    with request.app.state.db.read_session() as session:
        cases = core.list_cases(session, actor, state, district_code, unit_code, phone, limit, offset)
        return [core.to_out(session, c, actor, with_timeline=False) for c in cases]


@router.get("/cases/{number}", tags=["cases"], response_model=CaseOut, responses={401: {}, 404: {}})
def get_case(number: CaseNumber, request: Request, actor: ActorDep) -> CaseOut:
    """A case with its timeline, links and the actions this user may take now."""
    core = _core(request)
    with request.app.state.db.read_session() as session:
        return core.to_out(session, core.get_case(session, number, actor), actor)


ACTIONS = Literal["file", "answer", "dispatch", "accept", "return", "report_result", "verify", "reject_result",
                  "close", "record_satisfaction", "reopen", "request_extension", "approve_extension",
                  "reject_extension", "suspend", "resume", "void", "urge", "relocate"]


@router.post("/cases/{number}/actions/{action}", tags=["cases"], response_model=CaseOut,
             responses={**BAD_BODY, 401: {}, 403: {}, 404: {}, 409: {}, 422: {}})
def act(number: CaseNumber, action: ACTIONS, params: ActionIn, request: Request, actor: ActorDep) -> CaseOut:
    """Move a case through the workflow. A wrong state (409), role (403) or missing note (422) is refused."""
    core = _core(request)
    with request.app.state.db.session() as session:
        core.get_case(session, number, actor)  # 404 for what this user may not see
        case = core.apply_action(session, number, action, actor, params)
        out = core.to_out(session, case, actor)
    _publish(request, f"case.{action}", {"number": number, "state": out.state, "by": actor.username,
                                         "handling_unit": out.handling_unit})
    return out


@router.post("/cases/{number}/links/{link_id}/dismiss", tags=["cases"], response_model=CaseOut, responses={401: {}, 403: {}, 404: {}})
def dismiss_suggested_repeat(number: CaseNumber, link_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, actor: ActorDep) -> CaseOut:
    """Mark a suggested repeat as not a repeat (to confirm one, void the newer case with duplicate_of)."""
    require(actor, "case.link")
    core = _core(request)
    with request.app.state.db.session() as session:
        case = core.get_case(session, number, actor)
        try:
            dismiss_link(session, case, link_id)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        return core.to_out(session, case, actor)


@router.get("/categories", tags=["reference"])
def categories(request: Request) -> list[dict]:
    """The CJ/T 214 catalogue: key, kind, classes, name and synonyms."""
    return [{"key": c.key, "kind": c.kind, "major_code": c.major_code, "major_name": c.major_name,
             "minor_code": c.minor_code, "name": c.name, "synonyms": list(c.synonyms)} for c in _core(request).catalogue]


@router.get("/units", tags=["reference"], responses={401: {}})
def units(request: Request, actor: ActorDep) -> list[dict]:
    with request.app.state.db.read_session() as session:
        return [{"code": u.code, "name": u.name, "kind": u.kind, "district_code": u.district_code,
                 "street_codes": u.street_codes, "queue": u.queue, "active": u.active}
                for u in session.scalars(select(HandlingUnit).order_by(HandlingUnit.code))]


@router.get("/places/locate", tags=["reference"], responses={401: {}, 403: {}, 422: {}})
def locate_place(request: Request, actor: ActorDep,
                 q: Annotated[str, Query(max_length=300, pattern=NO_NUL, description="address as the caller said it")] = "",
                 lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
                 lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
                 datum: Literal["gcj02", "wgs84", "bd09"] = "gcj02",
                 category_key: Annotated[str | None, Query(max_length=5, pattern=NO_NUL)] = None) -> dict:
    """Where the address is, how sure, why, the runners-up, and where the case and call would go
    (for the agent desk, answered as the agent types)."""
    require(actor, "place.locate")
    router_ = _core(request).router
    if (lon is None) != (lat is None):
        raise HTTPException(422, "lon and lat: give both or neither")
    if lon is not None:
        placement = router_.locate_point(lon, lat, datum)
    else:
        with request.app.state.db.read_session() as session:
            placement = router_.locate(session, q)
    route = router_.rules.route(placement.district_code, placement.street_code, category_key)
    return {**placement.as_dict(), "auto_route": placement.confident(router_.threshold),
            "threshold": router_.threshold,
            "route": {"unit": route.unit_code, "transfer": route.transfer_target, "rule": route.rule}}


@router.get("/kpi", tags=["reports"], responses={401: {}, 403: {}, 422: {}})
def kpi(request: Request, actor: ActorDep, start: datetime, end: datetime,
        group_by: Literal["district", "unit", "category"] = "district") -> list[dict]:
    """CJ/T 292 indicators over [start, end); see case_bridge/kpi.py for each definition."""
    require(actor, "kpi.read")
    try:  # in UTC now: a date whose UTC form leaves the years 1-9999 cannot be stored or compared
        start, end = ((d if d.tzinfo else d.replace(tzinfo=UTC)).astimezone(UTC) for d in (start, end))
    except OverflowError:
        raise HTTPException(422, "start and end must lie within the years 1-9999 in UTC") from None
    if end <= start:
        raise HTTPException(422, "end must be after start")
    with request.app.state.db.read_session() as session:
        return [r.as_dict() for r in kpi_report(session, group_by, start, end)]


@router.get("/telephony", tags=["status"], responses={401: {}, 403: {}})
def telephony(request: Request, actor: ActorDep) -> dict:
    """The PBX link and the FastAGI server of this process, and the live queues (the wallboard's source)."""
    require(actor, "telephony.read")
    service = getattr(request.app.state, "telephony", None)
    if service is None:
        return {"running": False}
    board = service.ami.state.wallboard() if service.ami is not None else {}
    return {"running": True, **service.status(), "wallboard": board}


class TransferIn(BaseModel):
    district_code: str = Field(..., pattern=r"^\d{6}$")


class PauseIn(BaseModel):
    paused: bool
    reason: str = Field("", max_length=40, pattern=r"^[^\x00-\x1f]*$")


def _live(request: Request):
    """This process's telephony, with its AMI link (503 when it has none: `hotline web` alone)."""
    service = getattr(request.app.state, "telephony", None)
    if service is None or service.ami is None:
        raise HTTPException(503, "this process has no link to the PBX (run `hotline run`, or `hotline ami` beside it)")
    return service


@router.post("/telephony/calls/{uniqueid}/transfer", tags=["telephony"],
             responses={**BAD_BODY, 401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
def transfer_call(request: Request, actor: ActorDep, uniqueid: Annotated[str, Path(max_length=64,
                  pattern=r"^[A-Za-z0-9._-]+$")], body: TransferIn) -> dict:
    """Move a live caller to the district's queue (AMI Redirect). Refused at once (409) if the call is
    gone or the district has no transfer queue: a live call is not retried later."""
    require(actor, "call.control")
    service = _live(request)
    try:
        queue = from_thread.run(service.transfer_to_district, uniqueid, body.district_code)
    except AMIError as exc:
        raise HTTPException(409, str(exc)) from None
    _publish(request, "call.transfer_requested", {"uniqueid": uniqueid, "queue": queue, "by": actor.username})
    return {"uniqueid": uniqueid, "queue": queue}


@router.post("/telephony/agents/{extension}/pause", tags=["telephony"],
             responses={**BAD_BODY, 401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 503: {}})
def pause_agent(request: Request, actor: ActorDep, extension: Annotated[str, Path(pattern=r"^\d{3,8}$")],
                body: PauseIn) -> dict:
    """Pause (示忙) or unpause (示闲) an agent phone in all its queues. If the PBX link is down the wish
    is kept and applied when it is back (`kept`: true)."""
    require(actor, "agent.pause")
    if extension not in request.app.state.settings.agent_extensions:
        raise HTTPException(404, f"{extension} is not an agent extension of this hotline")
    service = _live(request)
    interface = f"PJSIP/{extension}"
    try:
        from_thread.run(service.ami.queue_pause, interface, body.paused, body.reason)
        kept = False
    except AMINotConnected:
        kept = True
    except AMIError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"interface": interface, "paused": body.paused, "kept": kept}


ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/sms/status", tags=["sms"], responses={401: {}, 403: {}})
def sms_status(request: Request, actor: ActorDep) -> dict:
    """The SMPP link of this process (bound, unreachable, bind refused and why)."""
    require(actor, "sms.read")
    service = getattr(request.app.state, "sms", None)
    return {"running": False} if service is None else {"running": True, **service.status()}


def _work_on(request: Request, actor: Actor, permission: str, not_open: type[Exception],
             step: Callable[[Session, CaseCore], Case]) -> CaseOut:
    """One step on a work list (an SMS report, a voicemail) that ends in a case: 404 if the item is not open."""
    require(actor, permission)
    core = _core(request)
    with request.app.state.db.session() as session:
        try:
            case = step(session, core)
        except not_open as exc:
            raise HTTPException(404, str(exc)) from None
        return core.to_out(session, case, actor)


@router.get("/sms/inbox", tags=["sms"], responses={401: {}, 403: {}})
def sms_inbox(request: Request, actor: ActorDep) -> list[dict]:
    """Reports by SMS waiting for an agent: located, with a suggested category, oldest first."""
    require(actor, "sms.read")
    with request.app.state.db.read_session() as session:
        return sms.open_work_items(session)


@router.post("/sms/inbox/{item_id}/case", tags=["sms"], response_model=CaseOut, status_code=201,
             responses={**BAD_BODY, 401: {}, 403: {}, 404: {}, 422: {}})
def sms_to_case(request: Request, actor: ActorDep, item_id: ItemId, data: NewCase) -> CaseOut:
    """Turn an SMS work item into a case (channel sms, the sender as caller)."""
    return _work_on(request, actor, "sms.work", sms.WorkItemError,
                    lambda session, core: sms.work_item_to_case(session, core, item_id, actor, data))


@router.post("/sms/inbox/{item_id}/merge/{number}", tags=["sms"], response_model=CaseOut,
             responses={401: {}, 403: {}, 404: {}})
def sms_merge(request: Request, actor: ActorDep, item_id: ItemId,
              number: Annotated[str, Path(max_length=24, pattern=NO_NUL)]) -> CaseOut:
    """The work item reports an open case: it joins that case's timeline."""
    return _work_on(request, actor, "sms.work", sms.WorkItemError,
                    lambda session, core: sms.merge_work_item(session, core, item_id, number, actor))


# ------------------------------------------------------------------------------ voicemail
Uniqueid = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class DismissIn(BaseModel):
    reason: str = Field(..., min_length=1, max_length=200, pattern=NO_NUL)


@router.get("/voicemail", tags=["voicemail"], responses={401: {}, 403: {}})
def voicemail_list(request: Request, actor: ActorDep) -> list[dict]:
    """Messages left after hours or when no agent answered, waiting for an agent, oldest first."""
    require(actor, "voicemail.read")
    with request.app.state.db.read_session() as session:
        return ivr.open_messages(session, request.app.state.settings.asterisk_spool_dir)


@router.get("/voicemail/{uniqueid}/audio", tags=["voicemail"], response_class=FileResponse,
            responses={401: {}, 403: {}, 404: {}})
def voicemail_audio(request: Request, actor: ActorDep, uniqueid: Uniqueid) -> FileResponse:
    """The message's sound file (WAV), for the roles that work the list."""
    require(actor, "voicemail.read")
    with request.app.state.db.read_session() as session:
        try:
            path = ivr.message_file(session, uniqueid, request.app.state.settings.asterisk_spool_dir)
        except ivr.MessageNotOpen as exc:
            raise HTTPException(404, str(exc)) from None
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, no-store"})


@router.post("/voicemail/{uniqueid}/case", tags=["voicemail"], response_model=CaseOut, status_code=201,
             responses={**BAD_BODY, 401: {}, 403: {}, 404: {}, 422: {}})
def voicemail_to_case(request: Request, actor: ActorDep, uniqueid: Uniqueid, data: NewCase) -> CaseOut:
    """Make a case of the message (channel phone, the caller's number, linked to the call)."""
    return _work_on(request, actor, "voicemail.work", ivr.MessageNotOpen,
                    lambda session, core: ivr.message_to_case(session, core, uniqueid, actor, data))


@router.post("/voicemail/{uniqueid}/merge/{number}", tags=["voicemail"], response_model=CaseOut,
             responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}})
def voicemail_merge(request: Request, actor: ActorDep, uniqueid: Uniqueid,
                    number: Annotated[str, Path(max_length=24, pattern=NO_NUL)]) -> CaseOut:
    """The message is about an open case: it joins that case's timeline."""
    return _work_on(request, actor, "voicemail.work", ivr.MessageNotOpen,
                    lambda session, core: ivr.merge_message(session, core, uniqueid, number, actor))


@router.post("/voicemail/{uniqueid}/dismiss", tags=["voicemail"], status_code=204,
             responses={**BAD_BODY, 401: {}, 403: {}, 404: {}, 422: {}})
def voicemail_dismiss(request: Request, actor: ActorDep, uniqueid: Uniqueid, body: DismissIn) -> Response:
    """Nothing to do (a silent or mistaken message): closed with the reason."""
    require(actor, "voicemail.work")
    with request.app.state.db.session() as session:
        try:
            ivr.dismiss_message(session, uniqueid, actor, body.reason)
        except ivr.MessageNotOpen as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    return Response(status_code=204)
