"""The SMS channel as a running service: one bound SMPP session, the "sms" outbox rows worked
through it, inbound messages classified, receipts recorded.

One process holds the bind (`hotline run`, or `hotline sms` apart), so the window and the rate
cap are the connection's; the Celery worker does not claim "sms" rows (it does not load this
effect).
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from case_bridge import CaseCore, EffectClaim, claim_due_effects, perform_effect, register_effect
from hotline.bus import EventBus
from hotline.db import Database
from hotline.settings import Settings
from sms.connector import Inbound, Receipt, SendError
from sms.inbound import MO, receive
from sms.outbound import Sender, record_receipt
from sms.segment import Segment
from sms.smpp import SmppConnector
from sms.templates import load_templates

log = logging.getLogger(__name__)


class SmsService:
    def __init__(self, settings: Settings, db: Database, core: CaseCore, bus: EventBus | None = None,
                 connector: SmppConnector | None = None) -> None:
        self.settings, self.db, self.core, self.bus = settings, db, core, bus
        self.connector = connector or SmppConnector(
            settings.smpp_host, settings.smpp_port, settings.smpp_system_id, settings.smpp_password,
            source_addr=settings.sms_source_addr, system_type=settings.smpp_system_type, window=settings.smpp_window,
            rate=settings.smpp_rate_per_second, reconnect_max=settings.smpp_reconnect_max_seconds)
        self.sender = Sender(settings, db, load_templates(settings.sms_templates_dir), self._submit)
        register_effect("sms")(self.sender)
        self.connector.on_inbound(self._inbound)
        self.connector.on_receipt(self._receipt)
        self.pool = ThreadPoolExecutor(max_workers=max(4, settings.smpp_window), thread_name_prefix="sms")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self.received = 0

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self.connector.run(), name="smpp"),
                       asyncio.create_task(self._work_outbox(), name="sms-outbox")]

    async def stop(self) -> None:
        self._stop.set()
        await self.connector.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------------------ MT
    def _submit(self, to: str, part: Segment) -> str:
        """Called from an outbox thread: one part through the connector on the service's loop."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self.connector.submit(to, part), self.loop)
        try:
            return future.result(timeout=self.connector.submit_timeout + 60)
        except TimeoutError:
            future.cancel()
            raise SendError("no answer from the SMS centre") from None

    async def _work_outbox(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            if self.connector.status != "bound":   # rows stay pending (no back-off) until we are bound
                await self._pause(0.2)
                continue
            claims = await asyncio.to_thread(self._claim)
            if not claims:
                await self._pause(min(s.outbox_poll_seconds, 0.5))
                continue
            await asyncio.gather(*(self.loop.run_in_executor(self.pool, perform_effect, self.db, c,
                                                             s.outbox_max_attempts) for c in claims))

    def _claim(self) -> list[EffectClaim]:
        with self.db.session() as session:
            return claim_due_effects(session, self.settings.outbox_lease_seconds,
                                    max(self.settings.smpp_window * 4, 20), kinds=["sms"])

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return

    # ------------------------------------------------------------------------------ MO and receipts
    async def _inbound(self, message: Inbound) -> None:
        mo = MO(message.source, message.text, message.destination, message.smsc_id, message.at)
        outcome = await asyncio.to_thread(self._receive, mo)
        self.received += 1
        if self.bus is not None and outcome.kind != "duplicate":
            await self.bus.publish("sms.received", {"kind": outcome.kind, "work_item": outcome.work_item,
                                                    "case_number": outcome.case_number})

    def _receive(self, mo: MO) -> Any:
        with self.db.session() as session:
            return receive(session, self.core, self.settings, mo)

    async def _receipt(self, receipt: Receipt) -> None:
        changed = await asyncio.to_thread(record_receipt, self.db, receipt)
        if changed and self.bus is not None:
            await self.bus.publish("sms.status", {"smsc_id": receipt.smsc_id, "status": changed})

    def status(self) -> dict[str, Any]:
        return {"status": self.connector.status, "error": self.connector.last_error, "binds": self.connector.binds,
                "received": self.received}


