"""The SMS work list (`/sms`): reports by SMS (a burst from one number is one row) with placement
and suggested category; make a case, merge into an open case of the sender, or text back."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

import sms
from agent_ui import pages
from agent_ui.session import Person, SignedIn
from case_bridge import (CaseInputError, CaseNotFound, CatalogueError, IdempotencyConflict, NewCase, WorkflowError,
                         require)
from hotline.phone import describe

router = APIRouter(include_in_schema=False)
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def item_view(request: Request, person: SignedIn, item: dict[str, Any]) -> dict[str, Any]:
    core = request.app.state.core
    cat = item.get("suggested_category")
    names = core.router.gazetteer.divisions
    placement = item.get("placement") or {}
    district = placement.get("district_code")
    return {**item, "facts": describe(item["phone"], request.app.state.settings.phone_region),
            "category_name": core.catalogue.get(cat).name if cat in core.catalogue else "",
            "district_name": names[district].name if district in names else "",
            "confidence": placement.get("confidence"),
            "first_local": pages.local(request, datetime.fromisoformat(item["first_at"]))}


def list_view(request: Request, person: SignedIn) -> dict[str, Any]:
    core = request.app.state.core
    with request.app.state.db.read_session() as s:
        items = [item_view(request, person, i) for i in sms.open_work_items(s)]
        for item in items:
            item["open_cases"] = [c.number for c in core.list_cases(s, person.actor, phone=item["phone"], limit=10)
                                  if c.state not in ("closed", "surveyed", "void")]
        done = sms.recent_work_items(s, 30)
    return {"items": items, "done": done, "request_types": pages.REQUEST_TYPES}


@router.get("/sms", response_class=HTMLResponse)
def sms_list(request: Request, person: Person):
    pages.need(person, "sms.read")
    return pages.render(request, "sms/list.html", pages.context(request, person, "sms", **list_view(request, person)))


@router.get("/sms/items", response_class=HTMLResponse)
def sms_items(request: Request, person: Person):
    pages.need(person, "sms.read")
    return pages.render(request, "sms/_items.html", pages.context(request, person, "sms", **list_view(request, person)))


def _done(request: Request, person: SignedIn, message: str, error: bool = False):
    ctx = pages.context(request, person, "sms", **list_view(request, person), message=message, error=error)
    return pages.render(request, "sms/_items.html", ctx, status=422 if error else 200)


@router.post("/sms/{item_id}/case", response_class=HTMLResponse)
def to_case(request: Request, person: Person, item_id: ItemId, description: Annotated[str, Form(max_length=20000)] = "",
            address_text: Annotated[str, Form(max_length=300)] = "", category_key: Annotated[str, Form(max_length=5)] = "",
            request_type: Annotated[str, Form(max_length=4)] = "投诉"):
    require(person.actor, "sms.work")
    core = request.app.state.core
    try:
        data = NewCase(channel="sms", description=description or "（见短信）", address_text=address_text,
                       category_key=category_key or None, request_type=request_type)
        with request.app.state.db.session() as s:
            case = sms.work_item_to_case(s, core, item_id, person.actor, data)
            number = case.number
    except sms.WorkItemError:
        return _done(request, person, "这条短信已由他人处理", error=True)
    except ValidationError as exc:
        return _done(request, person, "；".join(str(e.get("msg")) for e in exc.errors()), error=True)
    except (CaseInputError, CatalogueError, IdempotencyConflict, WorkflowError) as exc:
        return _done(request, person, str(exc), error=True)
    from_thread.run(request.app.state.bus.publish, "case.created", {"number": number, "by": person.username})
    return _done(request, person, f"已建案 {number}")


@router.post("/sms/{item_id}/merge", response_class=HTMLResponse)
def merge(request: Request, person: Person, item_id: ItemId, number: Annotated[str, Form(max_length=24)]):
    require(person.actor, "sms.work")
    try:
        with request.app.state.db.session() as s:
            sms.merge_work_item(s, request.app.state.core, item_id, number.strip(), person.actor)
    except sms.WorkItemError:
        return _done(request, person, "这条短信已由他人处理", error=True)
    except CaseNotFound:
        return _done(request, person, f"没有案件 {number}", error=True)
    except WorkflowError as exc:
        return _done(request, person, str(exc), error=True)
    return _done(request, person, f"已并入案件 {number}")


@router.post("/sms/{item_id}/reply", response_class=HTMLResponse)
def reply(request: Request, person: Person, item_id: ItemId, text: Annotated[str, Form(max_length=1000)]):
    require(person.actor, "sms.work")
    parts, units, most = sms.reply_parts(request.app.state.sms_templates, text)
    if parts > most:
        return _done(request, person, f"短信过长：{units} 字 = {parts} 条，最多 {most} 条", error=True)
    try:
        with request.app.state.db.session() as s:
            sms.reply_to_work_item(s, item_id, text, person.actor)
    except sms.WorkItemError:
        return _done(request, person, "这条短信已由他人处理", error=True)
    except ValueError as exc:
        return _done(request, person, str(exc), error=True)
    return _done(request, person, "回复短信已排队发送")


@router.get("/sms/count", response_class=HTMLResponse)
def reply_count(request: Request, person: Person, text: str = ""):
    """How many parts the reply makes, shown as the agent types."""
    pages.need(person, "sms.read")
    parts, units, most = sms.reply_parts(request.app.state.sms_templates, text[:1000])
    cls = "late" if parts > most else "ok"
    return HTMLResponse(f'<span class="{cls}">{units} 字 · {parts}/{most} 条</span>')


