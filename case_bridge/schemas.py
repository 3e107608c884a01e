"""Validated shapes for what enters and leaves the case core (shared by the JSON API)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Channel = Literal["phone", "sms", "web", "open311"]
RequestType = Literal["投诉", "咨询", "建议", "求助", "表扬"]
Urgency = Literal["一般", "紧急", "特急"]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL (0x00); for identifiers kept as given


def _clean(text: str) -> str:
    """Drop control characters (keep newlines and tabs) and surrounding blanks."""
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()


class NewCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel = "phone"
    request_type: RequestType = "投诉"
    urgency: Urgency = "一般"
    category_key: str | None = Field(None, description="CJ/T 214 key such as E0102; see /api/v1/categories")
    description: str = Field(..., min_length=1, max_length=20000)
    caller_phone: str | None = Field(None, max_length=40)
    caller_name: str | None = Field(None, max_length=50)
    address_text: str = Field("", max_length=300)
    district_code: str | None = Field(None, pattern=r"^\d{6}$")
    street_code: str | None = Field(None, pattern=r"^\d{9}$")
    community_code: str | None = Field(None, pattern=r"^\d{12}$")
    grid_code: str | None = Field(None, pattern=r"^\d{14}$")
    lon: float | None = Field(None, ge=73, le=136)
    lat: float | None = Field(None, ge=3, le=54)
    placement_confidence: float | None = Field(None, ge=0, le=1, description="ignored: the router measures the "
                                               "confidence, and place_confirmed is a person's word for the district")
    place_confirmed: bool = Field(False, description="the agent confirmed district_code for this address (the router learns it)")
    idempotency_key: str | None = Field(None, min_length=1, max_length=128, pattern=NO_NUL)
    call_uniqueid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
                                      description="Asterisk's uniqueid of the call the report came in on "
                                                  "(several cases may name one call)")
    file: bool = Field(True, description="立案 at once when the case has a category")
    answer: str | None = Field(None, max_length=2000, description="a consultation answered on the call: closes at intake")

    @field_validator("description", "address_text", "caller_name", "answer")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else _clean(value)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("description is empty")
        return value


class EventOut(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    from_state: str | None
    to_state: str | None
    note: str
    data: dict


class LinkOut(BaseModel):
    id: int
    other_case: str
    kind: str
    status: str
    reason: str


class CaseOut(BaseModel):
    number: str
    channel: str
    request_type: str
    urgency: str
    category_key: str | None
    category_name: str | None
    description: str
    caller_phone: str | None
    caller_name: str | None
    address_text: str
    district_code: str | None
    street_code: str | None
    community_code: str | None
    grid_code: str | None
    lon: float | None
    lat: float | None
    placement_confidence: float | None
    handling_unit: str | None
    state: str
    state_label: str
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    time_limit: str | None
    deadline_light: str | None
    satisfaction: str | None
    reopen_requested: bool
    pending_extension_minutes: int | None
    allowed_actions: list[str]
    links: list[LinkOut] = []
    timeline: list[EventOut] = []


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000)
    unit_code: str | None = Field(None, max_length=32, pattern=NO_NUL, description="dispatch: the handling unit; default: the district's centre")
    minutes: int | None = Field(None, ge=1, le=60 * 24 * 90, description="request_extension: working minutes asked for")
    answer: Literal["满意", "基本满意", "不满意"] | None = Field(None, description="record_satisfaction")
    duplicate_of: str | None = Field(None, max_length=24, pattern=NO_NUL, description="void: the case this one repeats")
    # relocate: a corrected address, place or category; the case is placed and routed again
    address_text: str | None = Field(None, max_length=300)
    district_code: str | None = Field(None, pattern=r"^\d{6}$", description="relocate: the district, as a person confirms it")
    street_code: str | None = Field(None, pattern=r"^\d{9}$")
    community_code: str | None = Field(None, pattern=r"^\d{12}$")
    lon: float | None = Field(None, ge=73, le=136)
    lat: float | None = Field(None, ge=3, le=54)
    category_key: str | None = Field(None, max_length=5, pattern=NO_NUL)

    @field_validator("note", "address_text")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else _clean(value)
