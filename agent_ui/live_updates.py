"""What the live hub sends each page: the screen pop and seat state to the agent's desk, new SMS
reports to the SMS work list. Each render runs its database reads in a worker thread."""
from __future__ import annotations

import asyncio

from agent_ui import desk, pages, sms_pages
from agent_ui.live import Client, LiveHub
from hotline.bus import BusEvent, EventBus


def _fragment(client: Client, name: str, **values) -> str:
    ctx = pages.context(client.socket, client.person, client.page, **values)
    return pages.templates.get_template(name).render(ctx)


def _interface(client: Client) -> str | None:
    ext = client.person.extension
    return f"PJSIP/{ext}" if ext and client.page == "desk" else None


async def screen_pop(client: Client, event: BusEvent) -> str | None:
    if _interface(client) is None or event.data.get("interface") != _interface(client):
        return None

    def render() -> str:
        call = desk.call_view(client.socket, client.person, event.data.get("uniqueid", ""),
                              event.data.get("caller"), event.data.get("ivr"))
        return _fragment(client, "desk/_call.html", call=call, oob=True)
    return await asyncio.to_thread(render)


def seat_fragment(client: Client, error: str = "") -> str:
    view = desk.seat_view(client.socket, client.person)
    return '<div id="seat" hx-swap-oob="true">' + _fragment(client, "desk/_seat.html", error=error, **view) + "</div>"


async def phone_changed(client: Client, event: BusEvent) -> str | None:
    interface = _interface(client)
    if interface is None:
        return None
    about = event.data.get("device") or event.data.get("interface")
    if event.topic != "pbx.status" and about != interface:
        return None
    return await asyncio.to_thread(seat_fragment, client)


async def sms_list(client: Client, event: BusEvent) -> str | None:
    if client.page != "sms" or event.data.get("kind") != "report":
        return None

    def render() -> str:
        view = sms_pages.list_view(client.socket, client.person)
        return '<div id="sms-items" hx-swap-oob="true">' + _fragment(client, "sms/_items.html", **view) + "</div>"
    return await asyncio.to_thread(render)


def install(hub: LiveHub, bus: EventBus, seats) -> None:
    hub.on("call.agent_connect", screen_pop)
    hub.on("device.state", phone_changed)
    hub.on("queue.member", phone_changed)
    hub.on("pbx.status", phone_changed)
    hub.on("sms.received", sms_list)
    hub.attach(bus)

    async def completed(event: BusEvent) -> None:
        interface = str(event.data.get("agent") or "")
        if interface.startswith("PJSIP/"):
            await seats.call_completed(interface.removeprefix("PJSIP/"))
    bus.subscribe("call.agent_complete", completed)

    async def seat_changed(user_id: int, seat) -> None:
        for client in [c for c in hub.clients if c.person.user_id == user_id and c.page == "desk"]:
            hub.push(client, await asyncio.to_thread(seat_fragment, client))
    seats.on_change = seat_changed
