"""The case core's operations: create, act on, read. Each runs inside the caller's
transaction, and writes its timeline rows and outbox rows in that same transaction."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from case_bridge import authz, duplicates, outbox
from case_bridge.catalogue import Catalogue, CatalogueError, load_catalogue
from case_bridge.deadlines import Clock, TimeLimits, load_time_limits
from case_bridge.models import Case, CaseEvent, CaseLink, HandlingUnit, OutboxItem
from case_bridge.numbering import next_case_number
from case_bridge.placement import Router, placement_summary
from case_bridge.schemas import ActionIn, CaseOut, EventOut, LinkOut, NewCase
from case_bridge.workflow import (FINISHED_STATES, OPEN_STATES, SATISFACTION, STATES, WorkflowError, allowed_actions,
                                  check)
from hotline.accounts import SYSTEM, Actor
from hotline.db import utcnow
from hotline.phone import InvalidPhoneNumber, normalise
from hotline.settings import Settings
from hotline.workcalendar import WorkCalendar, load_calendar


class CaseInputError(ValueError):
    """The input cannot become a case; the message says what to correct."""


class IdempotencyConflict(CaseInputError):
    """The idempotency key was used before for a different request."""


def request_digest(data: NewCase) -> str:
    """SHA-256 of what a create request asks for (its key aside): a retry has the same digest."""
    body = json.dumps(data.model_dump(mode="json", exclude={"idempotency_key"}), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class CaseNotFound(LookupError):
    """No such case, or not one this viewer may see (the answer is the same)."""


@dataclass
class CreateResult:
    case: Case
    created: bool
    possible_duplicates: list[str] = field(default_factory=list)


class CaseCore:
    """Catalogue, time limits and calendar, loaded and validated once, and the operations over them."""

    def __init__(self, settings: Settings, catalogue: Catalogue | None = None,
                 calendar: WorkCalendar | None = None, limits: TimeLimits | None = None,
                 now: Callable[[], datetime] = utcnow, router: Router | None = None) -> None:
        self.settings = settings
        self.router = router or Router(settings)
        self.now = now  # the clock; a site's tests and replays can pass their own
        self.catalogue = catalogue or load_catalogue(settings.categories_file)
        self.calendar = calendar or load_calendar(settings.calendar_file, settings.timezone)
        self.limits = limits or load_time_limits(self.calendar, settings.time_limits_file)

    # ------------------------------------------------------------------ create
    @staticmethod
    def _repeated(existing: Case, digest: str) -> CreateResult:
        if existing.request_hash is not None and existing.request_hash != digest:
            raise IdempotencyConflict(
                f"this idempotency key was already used for case {existing.number} with a different request: "
                "a retry must repeat the request exactly; a new report needs a new key")
        return CreateResult(existing, created=False)

    def create_case(self, session: Session, data: NewCase, actor: Actor = SYSTEM) -> CreateResult:
        """A new case; with an idempotency key seen before, the case made then (when the request is
        the same) or IdempotencyConflict (when it is not: a different report must not vanish)."""
        digest = request_digest(data)
        if data.idempotency_key:
            existing = session.scalar(select(Case).where(Case.idempotency_key == data.idempotency_key))
            if existing is not None:
                return self._repeated(existing, digest)
        self._validate(session, data)
        now = self.now()
        phone = None
        if data.caller_phone:
            try:
                phone = normalise(data.caller_phone, self.settings.phone_region)
            except InvalidPhoneNumber as exc:
                raise CaseInputError(f"caller_phone: {exc}") from None
        number = next_case_number(session, data.category_key, now.astimezone(self.settings.zone).date())
        case = Case(
            number=number, idempotency_key=data.idempotency_key, channel=data.channel,
            request_hash=digest if data.idempotency_key else None, call_uniqueid=data.call_uniqueid,
            request_type=data.request_type, urgency=data.urgency, category_key=data.category_key,
            description=data.description, caller_phone=phone.e164 if phone else None,
            caller_name=data.caller_name, address_text=data.address_text,
            district_code=data.district_code, street_code=data.street_code,
            community_code=data.community_code, grid_code=data.grid_code, lon=data.lon, lat=data.lat,
            placement_confidence=data.placement_confidence, state="intake", created_at=now, updated_at=now,
        )
        placed = self._place(session, case, given=data.district_code is not None,
                             confirmed=data.place_confirmed and data.district_code is not None)
        route = self._route(session, case)
        try:
            with session.begin_nested():
                session.add(case)
                session.flush()
        except IntegrityError:
            if data.idempotency_key:  # a concurrent create with the same key won the race
                existing = session.scalar(select(Case).where(Case.idempotency_key == data.idempotency_key))
                if existing is not None:
                    return self._repeated(existing, digest)
            raise
        self._event(session, case, actor, "create", None, "intake", note="",
                    data={"channel": data.channel, "request_type": data.request_type, "placement": placed,
                          "route": route})
        if data.place_confirmed and data.district_code:
            self.router.confirm(session, case, actor.role)
        if phone and phone.is_mobile and data.channel in ("phone", "sms", "web"):
            outbox.enqueue(session, "sms", {"to": phone.e164, "template": "receipt", "case_number": number},
                           key=f"sms:receipt:{case.id}", case_id=case.id, due_at=now)
        if data.answer:
            self.apply_action(session, case, "answer", actor, ActionIn(note=data.answer))
        elif data.file and data.category_key and data.request_type in ("投诉", "求助", "建议"):
            self.apply_action(session, case, "file", actor if actor.role != "district" else SYSTEM, ActionIn())
            confident = (case.placement_confidence or 0) >= self.settings.auto_route_threshold
            if confident and case.handling_unit_code:
                self.apply_action(session, case, "dispatch", SYSTEM, ActionIn(note="定位可信，自动派遣"))
        found = duplicates.flag_possible_repeats(session, case, self.settings)
        return CreateResult(case, created=True, possible_duplicates=found)

    def units(self, session: Session) -> dict[str, HandlingUnit]:
        """The handling units, read once per transaction (they change rarely; cases read them often)."""
        cached = session.info.get("handling_units")
        if cached is None:
            cached = session.info["handling_units"] = {u.code: u for u in session.scalars(select(HandlingUnit))}
        return cached

    def _validate(self, session: Session, data: NewCase) -> None:
        if data.category_key is not None:
            try:
                self.catalogue.get(data.category_key)
            except CatalogueError as exc:
                raise CaseInputError(f"category_key: {exc}") from None
        elif data.request_type in ("投诉", "求助"):
            raise CaseInputError("category_key: a 投诉 or 求助 needs a CJ/T 214 category")
        if len(data.description) > self.settings.description_max_length:
            raise CaseInputError(f"description: {len(data.description)} characters; at most "
                                 f"{self.settings.description_max_length} are kept — shorten it")
        if data.district_code and not any(u.district_code == data.district_code for u in self.units(session).values()):
            raise CaseInputError(f"district_code: {data.district_code} is not a district this hotline serves")
        if (data.lon is None) != (data.lat is None):
            raise CaseInputError("lon and lat: give both or neither")
        self._validate_divisions(data)

    def _validate_divisions(self, data: NewCase) -> None:
        """街道 within the district, 社区 within the 街道, grid within the 社区, each one the gazetteer knows."""
        chain = [("district_code", data.district_code), ("street_code", data.street_code),
                 ("community_code", data.community_code), ("grid_code", data.grid_code)]
        known = getattr(self.router.gazetteer, "divisions", {})
        above_name, above = None, None
        for name, code in chain:
            if code is None:
                continue
            if above is None and name != "district_code":
                raise CaseInputError(f"{name}: give the district_code (and the levels between) with it")
            if above is not None and not code.startswith(above):
                raise CaseInputError(f"{name}: {code} does not lie within {above_name} {above}")
            if name in ("street_code", "community_code") and known and code not in known:
                raise CaseInputError(f"{name}: {code} is not a division of this city's gazetteer")
            above_name, above = name, code

    def _place(self, session: Session, case: Case, given: bool, confirmed: bool = False) -> dict[str, Any]:
        """Fill the placement from the address (or the point) unless a person gave the district."""
        if given:
            # a confidence sent by a client decides nothing: only a person's confirmation is certain;
            # a district given without one waits for the dispatcher
            case.placement_confidence = 1.0 if confirmed else None
            if case.community_code and not case.grid_code:
                case.grid_code = case.community_code + "00"
            return {"by": "person", "district_code": case.district_code}
        if case.lon is not None and case.lat is not None:
            p = self.router.locate_point(case.lon, case.lat)
        elif case.address_text.strip():
            p = self.router.locate(session, case.address_text)
        else:
            case.district_code = case.street_code = case.community_code = case.grid_code = None
            case.placement_confidence = None
            return {"by": "router", "reason": "no address given"}
        served = {u.district_code for u in self.units(session).values()}
        if p.placed and p.district_code in served:
            case.district_code, case.street_code, case.community_code = p.district_code, p.street_code, p.community_code
            case.grid_code, case.placement_confidence = p.grid_code, p.confidence
            if p.point and case.lon is None:
                case.lon, case.lat = p.point
        else:
            case.district_code = case.street_code = case.community_code = case.grid_code = None
            case.placement_confidence = 0.0
        return {"by": "router", **placement_summary(p)}

    def _route(self, session: Session, case: Case) -> dict[str, Any]:
        """The handling unit by the routing rules; a rule naming no active unit falls back to the centre."""
        route = self.router.route(case)
        units = self.units(session)
        unit = units.get(route.unit_code) if route.unit_code else None
        if unit is None or not unit.active:
            unit = self._district_centre(session, case)
        case.handling_unit_code = unit.code if unit else None
        return {"unit": case.handling_unit_code, "transfer": route.transfer_target, "rule": route.rule}

    def _district_centre(self, session: Session, case: Case) -> HandlingUnit | None:
        if not case.district_code:
            return None
        units = sorted((u for u in self.units(session).values() if u.district_code == case.district_code
                        and u.active and u.kind == "district_centre" and not u.street_codes), key=lambda u: u.code)
        return units[0] if units else None

    # ------------------------------------------------------------------ act
    def apply_action(self, session: Session, case: Case | str, action: str, actor: Actor,
                     params: ActionIn | None = None) -> Case:
        params = params or ActionIn()
        if isinstance(case, str):
            case = self.lock_case(session, case)
        own = actor.role != "district" or (actor.unit_code is not None and actor.unit_code == case.handling_unit_code)
        t = check(action, case.state, actor.role, own_unit=own, note=params.note)
        now = self.now()
        before = case.state
        data: dict[str, Any] = {}
        getattr(self, f"_on_{action}", lambda *a: None)(session, case, actor, params, now, data)
        if t.target:
            case.state = t.target
        case.updated_at = now
        event = self._event(session, case, actor, action, before, case.state, params.note, data)
        self._after(session, case, action, event, now)
        return case

    def lock_case(self, session: Session, number: str) -> Case:
        case = session.scalar(select(Case).where(Case.number == number).with_for_update(of=Case))
        if case is None:
            raise CaseNotFound(f"no case {number}")
        return case

    def _clock(self, case: Case) -> Clock | None:
        if case.clock_started_at is None:
            return None
        return Clock(case.clock_started_at, case.limit_minutes or 0, case.limit_basis or "work",
                     case.extension_minutes, case.suspended_minutes, case.suspended_since)

    def _set_clock(self, case: Case, clock: Clock | None) -> None:
        if clock is None:
            case.clock_started_at = case.due_at = case.suspended_since = None
            case.limit_minutes, case.extension_minutes, case.suspended_minutes = None, 0, 0.0
            return
        case.clock_started_at, case.limit_minutes, case.limit_basis = clock.started_at, clock.limit_minutes, clock.basis
        case.extension_minutes, case.suspended_minutes = clock.extension_minutes, clock.suspended_minutes
        case.suspended_since = clock.suspended_since
        case.due_at = clock.due_at(self.calendar)

    def _on_file(self, session, case, actor, params, now, data) -> None:
        if not case.category_key:
            raise WorkflowError("立案 needs a category: set category_key first", status=422)
        case.filed_at = now

    def _on_answer(self, session, case, actor, params, now, data) -> None:
        case.closed_at = now

    def _on_dispatch(self, session, case, actor, params, now, data) -> None:
        code = params.unit_code or case.handling_unit_code
        unit = self.units(session).get(code) if code else None
        if unit is None or not unit.active:
            raise WorkflowError("派遣 needs a handling unit: give unit_code, or place the case in a district first",
                                status=422)
        case.handling_unit_code = unit.code
        case.dispatched_at = now
        limit = self.limits.limit_for(case.category_key, case.urgency)
        case.limit_label = limit.label
        self._set_clock(case, Clock(now, limit.minutes, limit.basis))
        case.urged_count = 0
        data.update(unit=unit.code, limit=limit.label)

    def _on_accept(self, session, case, actor, params, now, data) -> None:
        # the district agrees the case is theirs: if it was dispatched to a unit of another district
        # than the router's, the accepting district is where it is
        unit = self.units(session).get(case.handling_unit_code) if case.handling_unit_code else None
        if unit and unit.district_code and unit.district_code != case.district_code:
            data["district_before"] = case.district_code
            case.district_code, case.street_code, case.community_code, case.grid_code = unit.district_code, None, None, None
        self.router.confirm(session, case, "district_accept")

    def _on_relocate(self, session, case, actor, params, now, data) -> None:
        changes = {k: v for k, v in params.model_dump(include={"address_text", "district_code", "street_code",
                   "community_code", "lon", "lat", "category_key"}).items() if v is not None}
        if not changes:
            raise WorkflowError("改定位 needs a new address, place or category", status=422)
        if "category_key" in changes:
            try:
                self.catalogue.get(changes["category_key"])
            except CatalogueError as exc:
                raise WorkflowError(f"category_key: {exc}", status=422) from None
        given = "district_code" in changes
        if given and not any(u.district_code == changes["district_code"] for u in self.units(session).values()):
            raise WorkflowError(f"district_code: {changes['district_code']} is not a district this hotline serves",
                                status=422)
        if (params.lon is None) != (params.lat is None):
            raise WorkflowError("lon and lat: give both or neither", status=422)
        district = changes.get("district_code", case.district_code)
        for key in ("street_code", "community_code"):
            if key in changes and not (district and changes[key].startswith(district)):
                raise WorkflowError(f"{key}: {changes[key]} is not in district {district}", status=422)
        data["before"] = {"address_text": case.address_text, "district_code": case.district_code,
                          "unit": case.handling_unit_code, "category_key": case.category_key}
        for key, value in changes.items():
            setattr(case, key, value)
        if given:
            case.placement_confidence = 1.0
            if "street_code" not in changes:
                case.street_code = case.community_code = case.grid_code = None
            data["placement"] = self._place(session, case, given=True, confirmed=True)
            self.router.confirm(session, case, actor.role)
        elif {"address_text", "lon", "lat"} & changes.keys():
            if "lon" not in changes:
                case.lon = case.lat = None   # the old point belonged to the old address
            data["placement"] = self._place(session, case, given=False)
        data["route"] = self._route(session, case)

    def _on_return(self, session, case, actor, params, now, data) -> None:
        data["returned_by"] = case.handling_unit_code
        self._set_clock(case, None)

    def _on_report_result(self, session, case, actor, params, now, data) -> None:
        clock = self._clock(case)
        data["on_time"] = bool(clock is None or clock.used_minutes(self.calendar, now) <= clock.total_minutes)

    def _on_reject_result(self, session, case, actor, params, now, data) -> None:
        case.rework_count += 1
        data["rework"] = True

    def _on_close(self, session, case, actor, params, now, data) -> None:
        case.closed_at = now

    def _on_record_satisfaction(self, session, case, actor, params, now, data) -> None:
        if params.answer not in SATISFACTION:
            raise WorkflowError("回访 needs answer: 满意, 基本满意 or 不满意", status=422)
        case.satisfaction = params.answer
        data["answer"] = params.answer
        if params.answer == "不满意":
            case.reopen_requested = True  # a request for the dispatcher, never a silent reopen
            data["reopen_requested"] = True

    def _on_reopen(self, session, case, actor, params, now, data) -> None:
        case.reopen_requested = False
        case.rework_count += 1
        case.closed_at = None
        data["rework"] = True

    def _on_request_extension(self, session, case, actor, params, now, data) -> None:
        if not params.minutes:
            raise WorkflowError("申请延期 needs minutes: the working minutes asked for", status=422)
        case.pending_extension_minutes = params.minutes
        data["minutes"] = params.minutes

    def _on_approve_extension(self, session, case, actor, params, now, data) -> None:
        if not case.pending_extension_minutes:
            raise WorkflowError("no extension has been requested for this case")
        clock = self._clock(case)
        data["minutes"] = case.pending_extension_minutes
        if clock:
            self._set_clock(case, clock.extend(case.pending_extension_minutes))
        case.pending_extension_minutes = None
        case.urged_count = 0

    def _on_reject_extension(self, session, case, actor, params, now, data) -> None:
        if not case.pending_extension_minutes:
            raise WorkflowError("no extension has been requested for this case")
        case.pending_extension_minutes = None

    def _on_suspend(self, session, case, actor, params, now, data) -> None:
        clock = self._clock(case)
        if clock:
            self._set_clock(case, clock.suspend(now))

    def _on_resume(self, session, case, actor, params, now, data) -> None:
        clock = self._clock(case)
        if clock:
            self._set_clock(case, clock.resume(self.calendar, now))

    def _on_void(self, session, case, actor, params, now, data) -> None:
        if params.duplicate_of:
            master = session.scalar(select(Case).where(Case.number == params.duplicate_of))
            if master is None or master.id == case.id:
                raise WorkflowError(f"duplicate_of: no other case {params.duplicate_of}", status=422)
            duplicates.confirm(session, case, master)
            data["duplicate_of"] = master.number
        self._set_clock(case, None)

    def _on_urge(self, session, case, actor, params, now, data) -> None:
        case.urged_count += 1
        data["urge"] = case.urged_count

    def _after(self, session: Session, case: Case, action: str, event: CaseEvent, now: datetime) -> None:
        """Outbox rows caused by an action, in the same transaction."""
        unit = self.units(session).get(case.handling_unit_code) if case.handling_unit_code else None
        if action in ("dispatch", "urge") and unit is not None and unit.webhook_url:
            outbox.enqueue(session, "webhook", {
                "url": unit.webhook_url,
                "body": {"event": f"case.{action}ed" if action == "dispatch" else "case.urged",
                         "case": self.to_summary(case)},
            }, key=f"webhook:{action}:{case.id}:{event.id}", case_id=case.id, due_at=now)
        if action in ("close", "answer") and case.caller_phone and case.caller_phone.startswith("+86"):
            outbox.enqueue(session, "sms", {"to": case.caller_phone, "template": "result", "case_number": case.number},
                           key=f"sms:result:{case.id}:{event.id}", case_id=case.id, due_at=now)
        if action == "urge" and unit is not None and unit.contact_phone:
            outbox.enqueue(session, "sms", {"to": unit.contact_phone, "template": "urge", "case_number": case.number,
                                            "essential": True},
                           key=f"sms:urge:{case.id}:{event.id}", case_id=case.id, due_at=now)
        if action == "dispatch" and case.caller_phone and case.caller_phone.startswith("+86"):
            outbox.enqueue(session, "sms", {"to": case.caller_phone, "template": "dispatched",
                                            "case_number": case.number},
                           key=f"sms:dispatched:{case.id}:{event.id}", case_id=case.id, due_at=now)
        if action == "close" and case.caller_phone:
            outbox.enqueue(session, "survey_call", {"to": case.caller_phone, "case_number": case.number},
                           key=f"survey:{case.id}:{event.id}", case_id=case.id,
                           due_at=callback_slot(session, self.settings, now))

    def _event(self, session: Session, case: Case, actor: Actor, action: str, before: str | None,
               after: str | None, note: str = "", data: dict | None = None) -> CaseEvent:
        event = CaseEvent(case_id=case.id, at=self.now(), actor_id=actor.user_id, actor=actor.label,
                          actor_role=actor.role, action=action, from_state=before, to_state=after,
                          note=note, data=data or {})
        session.add(event)
        session.flush()
        session.info.setdefault("events_written", []).append(event)
        return event

    # ------------------------------------------------------------------ read
    def visible(self, actor: Actor):
        """The WHERE clause limiting what this actor may see (case_bridge.authz decides)."""
        return authz.scope(actor)

    def add_note(self, session: Session, case: Case, actor: Actor, action: str, note: str,
                 data: dict | None = None) -> CaseEvent:
        """A timeline entry that changes no state (an SMS merged into the case, say)."""
        return self._event(session, case, actor, action, case.state, case.state, note, data or {})

    def case_to_join(self, session: Session, number: str, actor: Actor, what: str) -> Case:
        """An open case that a further report (`what`: an SMS, a voicemail) may join; 409 once it is finished."""
        case = self.get_case(session, number, actor)
        if case.state not in OPEN_STATES:
            raise WorkflowError(f"case {case.number} is {STATES[case.state]}, not open: {what} can join only an open "
                                "case; make a new case from it instead", status=409)
        return case

    def get_case(self, session: Session, number: str, actor: Actor) -> Case:
        case = session.scalar(select(Case).where(Case.number == number, self.visible(actor)))
        if case is None:
            raise CaseNotFound(f"no case {number}")  # the same answer whether absent or not yours
        return case

    def list_cases(self, session: Session, actor: Actor, state: str | None = None, district_code: str | None = None,
                   unit_code: str | None = None, phone: str | None = None, limit: int = 50, offset: int = 0) -> list[Case]:
        q = select(Case).where(self.visible(actor))
        if state:
            q = q.where(Case.state == state)
        if district_code:
            q = q.where(Case.district_code == district_code)
        if unit_code:
            q = q.where(Case.handling_unit_code == unit_code)
        if phone:
            try:
                q = q.where(Case.caller_phone == normalise(phone, self.settings.phone_region).e164)
            except InvalidPhoneNumber as exc:
                raise CaseInputError(f"phone: {exc}") from None
        return list(session.scalars(q.order_by(Case.id.desc()).limit(limit).offset(offset)))

    def possible_repeats(self, session: Session, actor: Actor, category_key: str | None, grid_code: str | None,
                         lon: float | None, lat: float | None) -> list[tuple[Case, str]]:
        """What a case with these facts would be flagged as repeating, before it exists (writes nothing)."""
        found = duplicates.candidates(session, self.settings, category_key, grid_code, lon, lat, self.now())
        visible = {c.id for c in session.scalars(select(Case).where(
            Case.id.in_([c.id for c, _ in found]), self.visible(actor)))} if found else set()
        return [(c, why) for c, why in found if c.id in visible]

    def effects(self, session: Session, case: Case) -> list[dict[str, Any]]:
        """The outside effects queued for the case (texts, notices, callbacks) and how they stand."""
        rows = session.scalars(select(OutboxItem).where(OutboxItem.case_id == case.id).order_by(OutboxItem.id))
        return [{"kind": r.kind, "template": (r.payload or {}).get("template"), "status": r.status,
                 "due_at": r.due_at, "attempts": r.attempts} for r in rows]

    def search_cases(self, session: Session, actor: Actor, text: str = "", state: str | None = None,
                     district_code: str | None = None, since: datetime | None = None, until: datetime | None = None,
                     limit: int = 50, offset: int = 0) -> tuple[list[Case], int]:
        """The cases this actor may see matching a number, a phone or words of the address or
        description, newest first, with how many match in all (for paging)."""
        q = select(Case).where(self.visible(actor))
        text = text.strip()
        if text:
            terms = [Case.number == text, Case.address_text.contains(text, autoescape=True),
                     Case.description.contains(text, autoescape=True)]
            try:
                terms.append(Case.caller_phone == normalise(text, self.settings.phone_region).e164)
            except InvalidPhoneNumber:
                pass
            q = q.where(or_(*terms))
        if state:
            q = q.where(Case.state == state)
        if district_code:
            q = q.where(Case.district_code == district_code)
        if since:
            q = q.where(Case.created_at >= since)
        if until:
            q = q.where(Case.created_at < until)
        total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
        return list(session.scalars(q.order_by(Case.id.desc()).limit(limit).offset(offset))), total

    def dispatcher_queue(self, session: Session) -> list[Case]:
        """Cases waiting for a person to place or re-place them."""
        return list(session.scalars(select(Case).where(or_(
            Case.state.in_(("filed", "returned", "reopened")), Case.reopen_requested.is_(True))).order_by(Case.id)))

    def light(self, case: Case, now: datetime | None = None) -> str | None:
        clock = self._clock(case)
        if clock is None or case.state in FINISHED_STATES or case.state == "reported":
            return None
        return clock.light(self.calendar, now or self.now())

    def minutes_left(self, case: Case, now: datetime | None = None) -> float | None:
        """Time left before the deadline, in the limit's own minutes (working minutes for a working-time
        limit); negative when late; None when no clock runs."""
        clock = self._clock(case)
        if clock is None or case.state in FINISHED_STATES or case.state == "reported":
            return None
        return clock.total_minutes - clock.used_minutes(self.calendar, now or self.now())

    def to_summary(self, case: Case) -> dict[str, Any]:
        cat = self.catalogue.get(case.category_key) if case.category_key in self.catalogue else None
        return {"number": case.number, "state": case.state, "state_label": STATES[case.state],
                "category_key": case.category_key, "category_name": cat.name if cat else None,
                "urgency": case.urgency, "description": case.description, "address_text": case.address_text,
                "district_code": case.district_code, "handling_unit": case.handling_unit_code,
                "due_at": case.due_at.isoformat() if case.due_at else None}

    def to_out(self, session: Session, case: Case, actor: Actor, with_timeline: bool = True,
               fresh: CreateResult | None = None) -> CaseOut:
        """The case as this actor may see it. For a case this transaction created, pass `fresh`:
        its timeline is the events just written, and links exist only if repeats were found."""
        cat = self.catalogue.get(case.category_key) if case.category_key in self.catalogue else None
        own = actor.role != "district" or actor.unit_code == case.handling_unit_code
        links = []
        timeline = []
        if fresh is not None and fresh.created and not fresh.possible_duplicates:
            timeline = [EventOut.model_validate(e, from_attributes=True)
                        for e in session.info.get("events_written", []) if e.case_id == case.id]
        elif with_timeline:
            rows = session.execute(
                select(CaseLink, Case.number).join(Case, Case.id == CaseLink.other_case_id)
                .where(CaseLink.case_id == case.id)).all()
            back = session.execute(
                select(CaseLink, Case.number).join(Case, Case.id == CaseLink.case_id)
                .where(CaseLink.other_case_id == case.id)).all()
            links = [LinkOut(id=l.id, other_case=n, kind=l.kind, status=l.status, reason=l.reason) for l, n in rows + back]
            timeline = [EventOut.model_validate(e, from_attributes=True) for e in
                        session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))]
        return CaseOut(
            **{k: getattr(case, k) for k in (
                "number", "channel", "request_type", "urgency", "category_key", "description", "caller_phone",
                "caller_name", "address_text", "district_code", "street_code", "community_code", "grid_code",
                "lon", "lat", "placement_confidence", "state", "created_at", "updated_at", "due_at",
                "satisfaction", "reopen_requested", "pending_extension_minutes")},
            category_name=cat.name if cat else None, handling_unit=case.handling_unit_code,
            state_label=STATES[case.state], time_limit=case.limit_label if case.clock_started_at else None,
            deadline_light=self.light(case), allowed_actions=allowed_actions(case.state, actor.role, own),
            links=links, timeline=timeline,
        )


CALLBACK_TALK_SECONDS = 90     # the survey's prompts, one key and the goodbye, with room to spare
MAX_PLANNED_LOOKAHEAD = 20000  # callbacks already planned that a new one is fitted between


def next_callback_time(s: Settings, after: datetime, delay_minutes: int | None = None) -> datetime:
    """The first moment inside calling hours, at least survey_delay_minutes after `after`."""
    delay = s.survey_delay_minutes if delay_minutes is None else delay_minutes
    local = (after + timedelta(minutes=delay)).astimezone(s.zone)
    start = local.replace(hour=s.callback_hours_start.hour, minute=s.callback_hours_start.minute, second=0, microsecond=0)
    end = local.replace(hour=s.callback_hours_end.hour, minute=s.callback_hours_end.minute, second=0, microsecond=0)
    if local < start:
        local = start
    elif local >= end:
        local = start + timedelta(days=1)
    return local.astimezone(after.tzinfo)


def callback_slot(session: Session, s: Settings, after: datetime, delay_minutes: int | None = None) -> datetime:
    """When a satisfaction callback should start: the first slot inside calling hours, at least the
    delay after `after`, that has room. A slot is as long as one callback (ringing plus the survey),
    and holds `survey_max_concurrent_calls` of them, so the night's closures are spread over the
    morning instead of all dialling at the opening minute, and the trunk is never asked for more
    lines than it has."""
    slot = timedelta(seconds=s.survey_ring_seconds + CALLBACK_TALK_SECONDS)
    at = next_callback_time(s, after, delay_minutes)
    planned = session.scalars(select(OutboxItem.due_at).where(
        OutboxItem.kind == "survey_call", OutboxItem.status != "failed", OutboxItem.due_at >= at)
        .order_by(OutboxItem.due_at).limit(MAX_PLANNED_LOOKAHEAD)).all()
    taken = 0
    for due in planned:   # in time order
        if due < at:      # more than a full slot's worth planned there: already passed over
            continue
        if due >= at + slot:
            break         # the current slot still has room
        taken += 1
        if taken >= s.survey_max_concurrent_calls:
            at, taken = next_callback_time(s, at + slot, 0), 0
    return at
