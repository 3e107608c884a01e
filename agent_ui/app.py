"""The web application: JSON API, Open311, the OpenAPI pages (/docs, /redoc) and a status
page. Built by `create_app`."""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from agent_ui import api
from case_bridge import (Case, CaseCore, CaseInputError, CaseNotFound, CatalogueError, Forbidden, HandlingUnit,
                         WorkflowError, install_open311)
from hotline import clock
from hotline.bus import EventBus, InProcessBus
from hotline.db import Database
from hotline.settings import Settings, get_settings

log = logging.getLogger(__name__)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


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

    app.include_router(api.router)
    install_open311(app)

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
        with app.state.db.session() as session:
            session.execute(select(1))
        calendar = app.state.core.calendar
        return {"status": "ok", "calendar_known_through": calendar.known_through, "warnings": status_warnings()}

    def status_warnings() -> list[str]:
        """What a person should act on: the calendar running out, IVR prompts not built."""
        calendar = app.state.core.calendar
        out = [w for w in [calendar.warning(clock.now().astimezone(settings.zone).date())] if w]
        telephony = getattr(app.state, "telephony", None)
        if telephony is not None:
            out += telephony.warnings()
        return out

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        with app.state.db.session() as session:
            counts = dict(session.execute(select(Case.state, func.count()).group_by(Case.state)).all())
            units = session.scalars(select(HandlingUnit).order_by(HandlingUnit.code)).all()
        return templates.TemplateResponse(request, "home.html", {
            "settings": settings, "counts": counts, "units": units, "categories": len(app.state.core.catalogue),
            "warnings": status_warnings()})

    return app
