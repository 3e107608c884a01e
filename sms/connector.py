"""What the rest of the SMS channel needs from a link to an SMS centre.

SMPP 3.4 (`sms.smpp.SmppConnector`) is the first connector; a CMPP/SGIP/SMGP one for an
operator's own gateway implements the same interface and nothing else changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable, Protocol

from sms.segment import Segment


class SendError(Exception):
    """A part was not accepted; it may be retried."""


class PermanentSendError(SendError):
    """A part can never be accepted (a refused destination, a malformed message)."""


class NotBound(SendError):
    """No bound session now: nothing was sent."""


class BindRefused(Exception):
    """The SMS centre refused our bind (wrong system id or password, or not allowed)."""


@dataclass(frozen=True)
class Inbound:
    """A complete inbound message (concatenated parts already joined)."""
    source: str            # E.164 when the source was a number, else as sent
    destination: str
    text: str
    smsc_id: str | None
    data_coding: int
    at: datetime


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt for one submitted part."""
    smsc_id: str
    state: str             # DELIVRD | UNDELIV | EXPIRED | REJECTD | DELETED | UNKNOWN | ACCEPTD
    error: str
    at: datetime

    @property
    def delivered(self) -> bool:
        return self.state == "DELIVRD"

    @property
    def final(self) -> bool:
        return self.state in ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED")


InboundHandler = Callable[[Inbound], Awaitable[None]]
ReceiptHandler = Callable[[Receipt], Awaitable[None]]


class Connector(Protocol):
    status: str            # starting | bound | unreachable | bind_refused | stopped

    async def run(self) -> None:
        """Stay bound: connect, bind, keep alive, re-bind with back-off; returns after stop()."""
        ...

    async def stop(self) -> None: ...

    async def submit(self, destination: str, part: Segment, *, receipt: bool = True) -> str:
        """Submit one part; the SMS centre's message id once it acknowledged it."""
        ...

    def on_inbound(self, handler: InboundHandler) -> None: ...

    def on_receipt(self, handler: ReceiptHandler) -> None: ...
