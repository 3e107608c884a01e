"""Telephony as a running service: the FastAGI server, the AMI link and the call recorder.

`hotline run` starts all of it beside the web app in one asyncio process; `hotline agi` and
`hotline ami` start one side each for sites that run them apart.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Any

from case_bridge import CaseCore
from hotline.bus import EventBus, InProcessBus
from hotline.db import Database
from hotline.settings import Settings
from ivr import flows
from ivr.agi import AGIServer
from ivr.ami import AMIClient, AMIError, AMINotConnected
from ivr.ami_state import CallCentreState
from ivr.prompts import load_catalogue
from ivr.recorder import CallRecorder
from ivr.services import IVRServices

log = logging.getLogger(__name__)


def build_agi_server(settings: Settings, db: Database, core: CaseCore, bus: EventBus | None = None) -> AGIServer:
    """The FastAGI application with the product's flows on their routes."""
    services = IVRServices(settings, db, core, bus, catalogue=load_catalogue())
    server = AGIServer(header_timeout=settings.agi_header_timeout_seconds,
                       command_timeout=settings.agi_command_timeout_seconds, permit=settings.agi_permit)
    server.services = services
    for name in flows.AGI_ROUTES:
        server.add_route(name, functools.partial(getattr(flows, name), svc=services))
    return server


class Telephony:
    def __init__(self, settings: Settings, db: Database, bus: EventBus | None = None, core: CaseCore | None = None,
                 agi: bool = True, ami: bool = True) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus or InProcessBus()
        self.core = core or CaseCore(settings)
        self.agi = build_agi_server(settings, db, self.core, self.bus) if agi else None
        self.ami = AMIClient.from_settings(settings, bus=self.bus, state=CallCentreState(zone=settings.zone)) \
            if ami else None
        self.recorder = CallRecorder(settings, db)
        self._server: asyncio.AbstractServer | None = None
        self._ami_task: asyncio.Task | None = None

    async def start(self) -> None:
        if self.agi is not None:
            self._server = await self.agi.start(self.settings.agi_host, self.settings.agi_port)
            log.info("FastAGI listening on %s:%s (routes: %s)", self.settings.agi_host, self.settings.agi_port,
                     ", ".join(self.agi.routes))
            for warning in self.warnings():
                log.warning(warning)
        if self.ami is not None:
            self.recorder.attach(self.bus)
            self._ami_task = asyncio.create_task(self.ami.run(), name="ami")

    async def stop(self) -> None:
        if self.ami is not None:
            await self.ami.stop()
            if self._ami_task is not None:
                await asyncio.gather(self._ami_task, return_exceptions=True)
            await self.recorder.stop()
        if self.agi is not None and self._server is not None:
            await self.agi.close(self._server, grace=3.0)   # calls in the IVR get 3 s, then go on in the dialplan

    async def transfer_to_district(self, uniqueid: str, district_code: str) -> str:
        """Move a live caller to the district's queue (AMI Redirect into hotline-transfer); returns
        the queue. Live calls are not outbox work: a transfer that fails is reported to the agent now."""
        if self.ami is None:
            raise AMIError("this process has no AMI link")
        call = self.ami.state.calls.get(uniqueid)
        if call is None:
            raise AMIError(f"no live call {uniqueid}")
        target = self.core.router.rules.route(district_code).transfer_target or ""
        kind, _, queue = target.partition(":")
        if kind != "queue" or not queue:
            raise AMIError(f"district {district_code} has no transfer queue (rule target {target!r})")
        await self.ami.redirect(call.channel, "hotline-transfer", queue)
        return queue

    # ------------------------------------------------------------------ an agent's seat (the desk)
    async def agent_ready(self, extension: str) -> bool:
        """就绪: the phone joins the city queue, unpaused. True if the PBX took it now; False if the
        link is down and the wish is kept for when it is back."""
        interface = f"PJSIP/{extension}"
        now = True
        for step in (lambda: self._ami().queue_add(self.settings.city_queue, interface),
                     lambda: self._ami().queue_pause(interface, False, queue=self.settings.city_queue)):
            now = await self._seat(step) and now
        return now

    async def agent_pause(self, extension: str, reason: str) -> bool:
        """小休 / 话后处理: paused in its queues with the reason (shown on the wallboard)."""
        return await self._seat(lambda: self._ami().queue_pause(f"PJSIP/{extension}", True, reason))

    async def agent_sign_out(self, extension: str) -> bool:
        """签出: the phone leaves the city queue."""
        return await self._seat(lambda: self._ami().queue_remove(self.settings.city_queue, f"PJSIP/{extension}"))

    async def _seat(self, step) -> bool:
        try:
            await step()
        except AMINotConnected:
            return False
        except AMIError as exc:   # "Already there" / "Not there": what was asked already holds
            if not any(s in str(exc) for s in ("Already there", "Not there")):
                raise
        return True

    def _ami(self) -> AMIClient:
        if self.ami is None:
            raise AMIError("this process has no AMI link")
        return self.ami

    def agent_phone(self, extension: str) -> dict[str, Any]:
        """The phone as the PBX sees it, and whether the PBX is reachable at all."""
        if self.ami is None:
            return {"pbx": "absent", "registered": None, "queues": [], "paused": False, "paused_reason": "",
                    "in_call": False}
        return {"pbx": self.ami.status, **self.ami.state.phone(f"PJSIP/{extension}")}

    def live_call_of(self, extension: str) -> dict[str, Any] | None:
        call = self.ami.state.call_of_agent(f"PJSIP/{extension}") if self.ami is not None else None
        return call.summary() if call is not None else None

    def unbuilt_prompts(self) -> list[str]:
        """IVR prompts with no file in prompts_dir (not built yet), plus those Asterisk could not play."""
        if self.agi is None:
            return []
        services = self.agi.services
        ids = [p.id for p in services.catalogue.values()] if services.catalogue is not None else []
        missing = {pid for pid in ids if not os.path.exists(services.prompt(pid) + ".wav")}
        return sorted(missing | services.missing_prompts)

    def warnings(self) -> list[str]:
        missing = self.unbuilt_prompts()
        if not missing:
            return []
        shown = "、".join(missing[:8]) + ("…" if len(missing) > 8 else "")
        return [f"语音提示缺失 {len(missing)} 个（{shown}）：来电仍可按键，但听不到提示。请运行 `hotline prompts build`。"
                f" (IVR prompts missing: {', '.join(missing[:8])}; run `hotline prompts build`.)"]

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.agi is not None:
            out["agi"] = {"listening": f"{self.settings.agi_host}:{self.settings.agi_port}",
                          "sessions": self.agi.sessions, "active": len(self.agi.active), "rejected": self.agi.rejected,
                          "missing_prompts": self.unbuilt_prompts()}
        if self.ami is not None:
            out["ami"] = {"status": self.ami.status, "error": self.ami.last_error, "connects": self.ami.connects,
                          "events": self.ami.state.events_seen}
        return out
