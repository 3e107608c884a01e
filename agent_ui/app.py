"""The web application: the pages (sign-in, desk, cases, SMS work list) with their one WebSocket,
the JSON API, Open311, the OpenAPI pages (/docs, /redoc). Built by `create_app`."""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

import sms
from agent_ui import api, cases, desk, live_updates, pages, session, sms_pages
from agent_ui.category_search import CategoryIndex
from agent_ui.knowledge import load_knowledge
from agent_ui.live import LiveHub
from agent_ui.seat import Seats
from case_bridge import CaseCore, CaseInputError, CaseNotFound, CatalogueError, Forbidden, WorkflowError, install_open311
from hotline import clock
from hotline.bus import EventBus, InProcessBus
from hotline.db import Database
from hotline.settings import Settings, get_settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MACHINE_PATHS = ("/api/", "/open311/", "/healthz", "/docs", "/redoc", "/openapi.json", "/static/")
# the pages run no script but their own files; styles may be inline (htmx adds its indicator style)
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def create_app(settings: Settings | None = None, db: Database | None = None, bus: EventBus | None = None,
               core: CaseCore | None = None) -> FastAPI:
    settings = settings or get_settings()
    # the OpenAPI pages are served from this machine: call centres often have no outside internet
    app = FastAPIOffline(title="12319 城建服务热线 API", version="1", static_url="/static/docs",
                         description="Case core, workflow and Open311 GeoReport v2 of the 12319 hotline.")
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url)
    app.state.core = core or CaseCore(settings)   # `hotline run` shares one with telephony and SMS
    app.state.bus = bus or InProcessBus()
    app.state.telephony = None
    app.state.sms = None
    app.state.category_index = CategoryIndex(app.state.core.catalogue)
    app.state.knowledge = load_knowledge()
    app.state.sms_templates = sms.load_templates(settings.sms_templates_dir)
    app.state.seats = Seats(app.state.db, settings, lambda: app.state.telephony)
    app.state.live = LiveHub(app)
    live_updates.install(app.state.live, app.state.bus, app.state.seats)

    app.include_router(api.router)
    install_open311(app)
    for router in (session.router, desk.router, cases.router, sms_pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await app.state.live.serve(socket)

    @app.middleware("http")
    async def page_headers(request: Request, call_next):
        response = await call_next(request)
        if not request.url.path.startswith(MACHINE_PATHS):
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(session.NotSignedIn)
    async def _not_signed_in(request: Request, exc: session.NotSignedIn) -> Response:
        return session.sign_in_redirect(request)

    @app.exception_handler(session.CsrfRefused)
    async def _csrf(request: Request, exc: session.CsrfRefused) -> Response:
        return HTMLResponse("<p class=\"error\" role=\"alert\">请求缺少有效的安全令牌（CSRF），未执行。请刷新页面后重试。</p>",
                            status_code=403)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(MACHINE_PATHS):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return HTMLResponse(pages.templates.get_template("error.html").render(status=exc.status_code, detail=exc.detail),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(CaseInputError)
    async def _input(request: Request, exc: CaseInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(CatalogueError)
    async def _catalogue(request: Request, exc: CatalogueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(WorkflowError)
    async def _workflow(request: Request, exc: WorkflowError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(CaseNotFound)
    async def _missing(request: Request, exc: CaseNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/healthz", tags=["status"])
    def healthz() -> dict:
        with app.state.db.session() as s:
            s.execute(select(1))
        calendar = app.state.core.calendar
        return {"status": "ok", "calendar_known_through": calendar.known_through, "warnings": status_warnings()}

    def status_warnings() -> list[str]:
        """What a person should act on: the calendar running out, IVR prompts not built."""
        calendar = app.state.core.calendar
        out = [w for w in [calendar.warning(clock.now().astimezone(settings.zone).date())] if w]
        if app.state.telephony is not None:
            out += app.state.telephony.warnings()
        return out
    app.state.status_warnings = status_warnings

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        """A signed-in person goes to their role's page, everyone else to the sign-in page."""
        found = session.lookup(app.state.db, settings, request.cookies.get(session.COOKIE))
        if found is None or found.role not in session.PAGE_ROLES:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(session.ROLE_HOME[found.role], status_code=303)

    return app



