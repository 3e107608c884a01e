"""Open311 GeoReport v2 over the case core, for other systems (mounted at /open311/v2).

The app that mounts it puts a `hotline.db.Database` in `app.state.db` and a `CaseCore`
in `app.state.core`. JSON only (`.json` paths). Errors use the spec's format:
`[{"code": <HTTP status>, "description": "…"}]`. Points arrive in WGS-84, as the spec
says, and are stored in GCJ-02 like every other point of ours. Our richer states map to
open / closed, with the Chinese state name in `status_notes`.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import prcoords
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select

from case_bridge import authz
from case_bridge.models import Case, CaseEvent
from case_bridge.schemas import NewCase
from case_bridge.service import CaseCore, CaseInputError
from case_bridge.workflow import FINISHED_STATES, STATES
from hotline.accounts import Actor, actor_for_api_key
from hotline.db import Database

MAX_RESULTS = 1000
DEFAULT_DAYS = 90
PUBLIC_NOTE_ACTIONS = ("report_result", "answer", "return", "void")


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse([{"code": status, "description": description}], status_code=status)


router = APIRouter(tags=["Open311 GeoReport v2"])


def _parts(request: Request) -> tuple[Database, CaseCore]:
    return request.app.state.db, request.app.state.core


PUBLIC = Actor(role="public", username="public")


def _key(request: Request, form: dict[str, str] | None = None) -> str:
    """The api_key: the X-Api-Key header (kept out of URLs and access logs), else the spec's parameter."""
    return (request.headers.get("x-api-key") or (form or {}).get("api_key") or request.query_params.get("api_key")
            or "").strip()


def _reader(request: Request, session) -> Actor:
    """Who is reading: the key's user (scoped like everywhere else), or the public when the site
    publishes requests openly and no key was sent."""
    key = _key(request)
    actor = actor_for_api_key(session, key) if key else None
    if actor is None:
        if key or not request.app.state.core.settings.open311_public_read:
            raise Open311Error(403, "api_key is missing or not valid: this site does not publish requests openly")
        return PUBLIC
    if not authz.allowed(actor, "case.read"):
        raise Open311Error(403, f"the role {actor.role} may not read service requests")
    return actor


def _service(core: CaseCore, key: str) -> dict:
    c = core.catalogue.get(key)
    return {"service_code": c.key, "service_name": c.name, "description": c.label, "metadata": True,
            "type": "realtime", "keywords": ",".join(c.synonyms), "group": f"{c.kind}-{c.major_name}"}


@router.get("/services.json", summary="List services (CJ/T 214 categories)")
def list_services(request: Request) -> list[dict]:
    _, core = _parts(request)
    return [_service(core, c.key) for c in core.catalogue]


@router.get("/services/{service_code}.json", summary="Service definition (its attributes)")
def service_definition(service_code: str, request: Request) -> dict:
    _, core = _parts(request)
    if service_code not in core.catalogue:
        raise Open311Error(404, f"service_code {service_code!r} not found; GET services.json lists them")
    order = 1
    attrs = []
    for code, desc, values, required in (
        ("request_type", "诉求类型", ["投诉", "建议", "求助", "咨询", "表扬"], False),
        ("urgency", "紧急程度", ["一般", "紧急", "特急"], False),
    ):
        attrs.append({"variable": True, "code": code, "datatype": "singlevaluelist", "required": required,
                      "datatype_description": "", "order": order, "description": desc,
                      "values": [{"key": v, "name": v} for v in values]})
        order += 1
    return {"service_code": service_code, "attributes": attrs}


def _refuse_nul(*values: str | None) -> None:
    """PostgreSQL text cannot hold NUL (0x00): refuse it as bad input instead of failing in the driver."""
    if any(v and "\x00" in v for v in values):
        raise Open311Error(400, "NUL characters (0x00) are not allowed in a request")


def _w3c(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # in UTC now: a date whose UTC form leaves the years 1-9999 cannot be stored or compared
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise Open311Error(400, f"{name} {text!r} is not a W3C date-time such as 2026-11-21T09:30:00+08:00") from None


@router.post("/requests.json", summary="Create a service request (needs api_key)")
async def create_request(request: Request) -> JSONResponse:
    db, core = _parts(request)
    form = await _form(request)
    _refuse_nul(*form.keys(), *form.values())
    with db.read_session() as session:  # who is asking comes first: no key, no further answers
        actor = actor_for_api_key(session, _key(request, form))
    if actor is None:
        raise Open311Error(403, "api_key is missing or not valid; ask the hotline administrator for one")
    if not authz.allowed(actor, "case.create"):
        raise Open311Error(403, f"the role {actor.role} may not submit service requests")
    if len(form.get("idempotency_key", "")) > 64:
        raise Open311Error(400, "idempotency_key: at most 64 characters")
    attrs = {k[len("attribute["):-1]: v for k, v in form.items() if k.startswith("attribute[") and k.endswith("]")}
    lat, lon = form.get("lat"), form.get("long")
    try:
        point = (float(lat), float(lon)) if lat not in (None, "") and lon not in (None, "") else None
    except ValueError:
        raise Open311Error(400, "lat and long must be decimal degrees (WGS-84)") from None
    if point is None and not form.get("address_string") and not form.get("address_id"):
        raise Open311Error(400, "a location is required: lat and long, or address_string")
    if point and not (3 <= point[0] <= 54 and 73 <= point[1] <= 136):
        raise Open311Error(400, "lat/long lies outside China; this service accepts reports in its city only")
    name = " ".join(p for p in (form.get("last_name", ""), form.get("first_name", "")) if p).strip() or None
    gcj = prcoords.wgs_gcj(point) if point else None
    with db.session() as session:
        try:
            data = NewCase(
                channel="open311", request_type=attrs.get("request_type", "投诉"), urgency=attrs.get("urgency", "一般"),
                category_key=form.get("service_code") or None, description=form.get("description") or "（无描述）",
                caller_phone=form.get("phone") or None, caller_name=name,
                address_text=(form.get("address_string") or "")[:300], lat=gcj.lat if gcj else None,
                lon=gcj.lon if gcj else None, file=False,
                idempotency_key=f"open311:{actor.username}:{form['idempotency_key']}" if form.get("idempotency_key") else None,
            )
        except ValidationError as exc:
            raise Open311Error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        if not data.category_key:
            raise Open311Error(400, "service_code is required; GET services.json lists them")
        try:
            result = core.create_case(session, data, actor)
        except CaseInputError as exc:
            raise Open311Error(400, str(exc)) from None
        number = result.case.number
    return JSONResponse([{"service_request_id": number, "service_notice": "已受理，我们将尽快处理。",
                          "account_id": None}], status_code=201 if result.created else 200)


async def _form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "")
    try:
        if kind.startswith("application/json"):
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            return {str(k): str(v) for k, v in body.items() if v is not None}
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    except Open311Error:
        raise
    except Exception as exc:
        raise Open311Error(400, f"the body could not be read as a form or JSON object: {exc}") from None


def _request_out(core: CaseCore, case: Case, notes: dict[int, str]) -> dict:
    cat = core.catalogue.get(case.category_key) if case.category_key in core.catalogue else None
    status = "closed" if case.state in FINISHED_STATES else "open"
    note = STATES[case.state] + (f"：{notes[case.id]}" if case.id in notes else "")
    point = prcoords.gcj_wgs_bored((case.lat, case.lon)) if case.lat is not None else None
    return {
        "service_request_id": case.number, "status": status, "status_notes": note,
        "service_name": cat.name if cat else None, "service_code": case.category_key,
        "description": case.description, "agency_responsible": case.unit.name if case.unit else None,
        "service_notice": None, "requested_datetime": case.created_at.isoformat(),
        "updated_datetime": case.updated_at.isoformat(),
        "expected_datetime": case.due_at.isoformat() if case.due_at else None,
        "address": case.address_text or None, "address_id": None, "zipcode": None,
        "lat": point.lat if point else None, "long": point.lon if point else None, "media_url": None,
    }


def _public_notes(session, case_ids: list[int]) -> dict[int, str]:
    """The latest public-facing note per case (the result, the answer, why it was voided)."""
    notes: dict[int, str] = {}
    for case_id, note in session.execute(
            select(CaseEvent.case_id, CaseEvent.note).where(CaseEvent.case_id.in_(case_ids),
                                                            CaseEvent.action.in_(PUBLIC_NOTE_ACTIONS))
            .order_by(CaseEvent.id)):
        if note:
            notes[case_id] = note[:500]
    return notes


@router.get("/requests.json", summary="Query service requests")
def query_requests(request: Request) -> list[dict]:
    db, core = _parts(request)
    q = request.query_params
    _refuse_nul(*(v for _, v in q.multi_items()))
    stmt = select(Case)
    if q.get("service_request_id"):
        ids = [i.strip() for i in q["service_request_id"].split(",") if i.strip()][:MAX_RESULTS]
        stmt = stmt.where(Case.number.in_(ids))
    else:
        start, end = _w3c(q.get("start_date"), "start_date"), _w3c(q.get("end_date"), "end_date")
        if start and end and end < start:
            raise Open311Error(400, "end_date is before start_date")
        if not start and not end:
            start = core.now() - timedelta(days=DEFAULT_DAYS)
        if start:
            stmt = stmt.where(Case.created_at >= start)
        if end:
            stmt = stmt.where(Case.created_at <= end)
        if q.get("service_code"):
            stmt = stmt.where(Case.category_key.in_([c.strip() for c in q["service_code"].split(",")]))
        if q.get("status"):
            wanted = {s.strip() for s in q["status"].split(",")}
            if not wanted <= {"open", "closed"}:
                raise Open311Error(400, "status must be open, closed or both (comma-separated)")
            if wanted == {"open"}:
                stmt = stmt.where(Case.state.not_in(FINISHED_STATES))
            elif wanted == {"closed"}:
                stmt = stmt.where(Case.state.in_(FINISHED_STATES))
    with db.read_session() as session:
        actor = _reader(request, session)
        cases = list(session.scalars(stmt.where(authz.scope(actor)).order_by(Case.id.desc()).limit(MAX_RESULTS)))
        notes = _public_notes(session, [c.id for c in cases])
        return [_request_out(core, c, notes) for c in cases]


@router.get("/requests/{service_request_id}.json", summary="One service request")
def get_request(service_request_id: str, request: Request) -> list[dict]:
    db, core = _parts(request)
    _refuse_nul(service_request_id)
    with db.read_session() as session:
        actor = _reader(request, session)
        case = session.scalar(select(Case).where(Case.number == service_request_id, authz.scope(actor)))
        if case is None:
            raise Open311Error(404, f"service_request_id {service_request_id!r} not found")
        return [_request_out(core, case, _public_notes(session, [case.id]))]


def install_open311(app: FastAPI, prefix: str = "/open311/v2") -> None:
    """Mount the API and its spec-format error handler on an app."""
    app.include_router(router, prefix=prefix)

    @app.exception_handler(Open311Error)
    async def _open311_error(request: Request, exc: Open311Error) -> JSONResponse:
        return _error(exc.status, exc.description)
