"""Sign-in, sessions, CSRF and throttling for the browser pages.

A session is a row in `web_sessions`; the cookie holds a random token (HttpOnly, SameSite=Lax,
Secure over https), only its hash is stored, and a new one is made at every sign-in. A session
ends after `session_idle_minutes` without a request. Every unsafe request of a page carries the
session's CSRF token (the `X-CSRF-Token` header, which the pages' htmx adds, or a `csrf_token`
form field); without it the answer is 403 and nothing changes. The login form has its own
double-submit token, so a site cannot sign a browser in as someone else.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from agent_ui import throttle
from agent_ui.models import SignInEvent, WebSession
from hotline import clock
from hotline.accounts import ROLE_LABELS, Actor, User, hash_password, verify_password

COOKIE = "hotline_session"
LOGIN_COOKIE = "hotline_login"          # the login form's double-submit token
TOUCH_EVERY = timedelta(seconds=60)     # last_seen_at is written at most this often
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_HOME = {"agent": "/desk", "dispatcher": "/cases", "district": "/cases", "supervisor": "/cases",
             "admin": "/cases"}
PAGE_ROLES = frozenset(ROLE_HOME)       # roles that may use the pages (not Open311 clients)

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class SignedIn:
    token_hash: str
    user_id: int
    username: str
    display_name: str
    role: str
    unit_code: str | None
    extension: str | None
    csrf: str

    @property
    def actor(self) -> Actor:
        return Actor(role=self.role, user_id=self.user_id, username=self.username, unit_code=self.unit_code)

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


class NotSignedIn(Exception):
    """No valid session: pages redirect to /login, fragments and sockets answer 401."""


class CsrfRefused(Exception):
    """An unsafe request without the session's CSRF token."""


@functools.cache
def _dummy_user() -> User:
    """Verified against when the user does not exist, so the answer takes as long either way."""
    return User(password_hash=hash_password(secrets.token_urlsafe(16)))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_addr(request: Request) -> str:
    return (request.client.host if request.client else "")[:64]


def lookup(db, settings, token: str | None) -> SignedIn | None:
    """The live session of a cookie token, or None (absent, expired, user disabled)."""
    if not token or len(token) > 100:
        return None
    now = clock.now()
    with db.session() as s:
        row = s.execute(select(WebSession, User).join(User, User.id == WebSession.user_id)
                        .where(WebSession.token_hash == _hash(token))).first()
        if row is None:
            return None
        ws, user = row
        if not user.active or ws.last_seen_at + timedelta(minutes=settings.session_idle_minutes) < now:
            s.delete(ws)
            return None
        if now - ws.last_seen_at > TOUCH_EVERY:
            ws.last_seen_at = now
        return SignedIn(ws.token_hash, user.id, user.username, user.display_name or user.username, user.role,
                        user.unit_code, ws.extension, ws.csrf_token)


async def signed_in(request: Request) -> SignedIn:
    """The page's signed-in person (NotSignedIn otherwise); unsafe methods must carry the CSRF token."""
    found = getattr(request.state, "signed_in", None)
    if found is None:
        app = request.app
        found = await run_in_threadpool(lookup, app.state.db, app.state.settings, request.cookies.get(COOKIE))
        if found is None or found.role not in PAGE_ROLES:
            raise NotSignedIn()
        request.state.signed_in = found
    if request.method not in SAFE_METHODS:
        await check_csrf(request, found.csrf)
    return found


async def check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get("csrf_token")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()


Person = Annotated[SignedIn, Depends(signed_in)]


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")


# ------------------------------------------------------------------------------------- pages
def _login_page(request: Request, status: int = 200, error: str = "", username: str = "", nxt: str = "/") -> HTMLResponse:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    settings = request.app.state.settings
    response = templates.TemplateResponse(request, "session/login.html", {
        "settings": settings, "error": error, "username": username, "login_csrf": token, "next": nxt,
        "extensions": settings.agent_extensions}, status_code=status)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


def safe_next(nxt: str | None) -> str:
    """Only a path of this site (no //host, no scheme): no open redirect after sign-in."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt or len(nxt) > 300:
        return "/"
    return nxt


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _login_page(request, nxt=safe_next(next))


def _record(s: Session, username: str, user: User | None, addr: str, outcome: str, detail: str = "") -> None:
    s.add(SignInEvent(at=clock.now(), username=username[:64], user_id=user.id if user else None,
                      client_addr=addr, outcome=outcome, detail=detail[:200]))


def _local(request: Request, at) -> str:
    return at.astimezone(request.app.state.settings.zone).strftime("%H:%M")


def _attempt(request: Request, username: str, password: str, extension: str) -> tuple[str, object]:
    """One sign-in attempt in a transaction: ("ok", token) | ("locked", until) | ("failed", failures) |
    ("refused", message)."""
    app = request.app
    settings, addr, now = app.state.settings, client_addr(request), clock.now()
    with app.state.db.session() as s:
        verdict = throttle.check(s, settings, username, addr, now)
        user = s.scalar(select(User).where(User.username == username))
        if verdict.locked_until is not None:
            _record(s, username, user, addr, "locked", f"until {verdict.locked_until.isoformat()}")
            return "locked", verdict.locked_until
        good = verify_password(user or _dummy_user(), password) and user is not None
        if not good or not user.active or user.role not in PAGE_ROLES:
            _record(s, username, user, addr, "failed", "" if good or user is None else "wrong password")
            return "failed", verdict.failures + 1
        if extension:
            if user.role != "agent" or extension not in settings.agent_extensions:
                return "refused", "只有坐席员可签入分机，且须为本热线的坐席分机。"
            idle = now - timedelta(minutes=settings.session_idle_minutes)
            other = s.execute(select(User.username).join(WebSession, WebSession.user_id == User.id)
                              .where(WebSession.extension == extension, WebSession.user_id != user.id,
                                     WebSession.last_seen_at >= idle)).first()
            if other is not None:
                return "refused", f"分机 {extension} 已由 {other[0]} 签入使用，请选择其他分机。"
        old = request.cookies.get(COOKIE)
        if old:   # rotated: the session of before the sign-in is gone
            s.execute(delete(WebSession).where(WebSession.token_hash == _hash(old)))
        token = secrets.token_urlsafe(32)
        s.add(WebSession(token_hash=_hash(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                         extension=extension or None, created_at=now, last_seen_at=now, client_addr=addr,
                         user_agent=request.headers.get("user-agent", "")[:200]))
        _record(s, username, user, addr, "ok", f"extension {extension}" if extension else "")
        return "ok", (token, user.role)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, username: Annotated[str, Form(max_length=200)] = "",
                password: Annotated[str, Form(max_length=500)] = "", extension: Annotated[str, Form(max_length=16)] = "",
                csrf_token: Annotated[str, Form(max_length=100)] = "", next: Annotated[str, Form(max_length=300)] = "/"):
    nxt = safe_next(next)
    username = username.strip().replace("\x00", "")
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_page(request, 403, "页面已过期，请重新输入并登录。", username, nxt)
    if not username or not password:
        return _login_page(request, 422, "请输入用户名和密码。", username, nxt)
    outcome, value = await run_in_threadpool(_attempt, request, username, password, extension.strip())
    if outcome == "locked":
        return _login_page(request, 429, f"登录失败次数过多，账户暂时锁定，请于 {_local(request, value)} 后再试。",
                           username, nxt)
    if outcome == "failed":
        await asyncio.sleep(throttle.delay_after(request.app.state.settings, value))
        left = request.app.state.settings.signin_max_failures - value
        hint = f"再错 {left} 次将暂时锁定。" if 0 < left <= 2 else ("账户已暂时锁定。" if left <= 0 else "")
        return _login_page(request, 401, "用户名或密码错误。" + hint, username, nxt)
    if outcome == "refused":
        return _login_page(request, 409, str(value), username, nxt)
    token, role = value
    response = RedirectResponse(nxt if nxt != "/" else ROLE_HOME.get(role, "/cases"), status_code=303)
    set_cookie(request, response, COOKIE, token)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


def _sign_out(request: Request, person: SignedIn, everywhere: bool) -> None:
    with request.app.state.db.session() as s:
        if everywhere:
            s.execute(delete(WebSession).where(WebSession.user_id == person.user_id))
        else:
            s.execute(delete(WebSession).where(WebSession.token_hash == person.token_hash))
        _record(s, person.username, s.get(User, person.user_id), client_addr(request), "signed_out",
                "everywhere" if everywhere else "")


@router.post("/logout")
async def logout(request: Request, person: Person, everywhere: Annotated[str, Form(max_length=3)] = "") -> Response:
    await run_in_threadpool(_sign_out, request, person, everywhere == "1")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def set_extension(db, person: SignedIn, extension: str | None) -> None:
    with db.session() as s:
        s.execute(update(WebSession).where(WebSession.token_hash == person.token_hash).values(extension=extension))


def sign_in_redirect(request: Request) -> Response:
    """Where a request without a session goes: the login page (htmx: a full-page redirect)."""
    target = "/login?next=" + quote(safe_next(request.url.path), safe="/")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    if request.method not in SAFE_METHODS or request.url.path.startswith("/ws"):
        return Response("请先登录 (sign in first)", status_code=401)
    return RedirectResponse(target, status_code=303)
