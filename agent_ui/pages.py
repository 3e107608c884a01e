"""What every page shares: the templates, the signed-in layout's context, labels in Chinese."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates

from agent_ui.session import SignedIn
from case_bridge import STATES, TRANSITIONS, allowed

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

REQUEST_TYPES = ("投诉", "求助", "建议", "咨询", "表扬")
URGENCIES = ("一般", "紧急", "特急")
INTENTS = {"report": "报事/投诉", "progress": "查询进度", "consult": "咨询", "agent": "转人工", "done": "自助完成",
           "survey": "满意度回访"}
LIGHTS = {"green": ("正常", "ok"), "amber": ("临期", "warn"), "red": ("超期", "late")}
EVENT_LABELS = {"create": "受理登记", "sms_merged": "短信并入", "voicemail_merged": "留言并入", "note": "备注",
                **{a: t.label for a, t in TRANSITIONS.items()}}
NAV = [("/desk", "坐席工作台", "case.create"), ("/sms", "短信工单", "sms.read"), ("/cases", "案件查询", "case.read")]


def local(request: Request, at: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
    if at is None:
        return ""
    return at.astimezone(request.app.state.settings.zone).strftime(fmt)


def context(request: Request, person: SignedIn, page: str, **values: Any) -> dict[str, Any]:
    actor = person.actor
    nav = [(href, label) for href, label, perm in NAV
           if allowed(actor, perm) and (href != "/desk" or person.role == "agent")]
    return {"person": person, "page": page, "nav": nav, "settings": request.app.state.settings,
            "states": STATES, "warnings": request.app.state.status_warnings(), "local": lambda at, fmt="%m-%d %H:%M": local(request, at, fmt), **values}


def need(person: SignedIn, permission: str) -> None:
    """A page or fragment the role may not use: 403 with the reason (never a partial page)."""
    if not allowed(person.actor, permission):
        raise HTTPException(403, "您的角色无权使用此页面")


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200):
    return templates.TemplateResponse(request, name, ctx, status_code=status)
