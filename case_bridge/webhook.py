"""The webhook effect: an HTTP POST of JSON to a district centre's (or any) system.

The row's idempotency key travels as the `Idempotency-Key` header: a receiver that keeps
the keys it has seen applies each notice once, even when a worker crashed after sending
and the notice is sent again. 2xx confirms; 4xx other than 408/429 is permanent.
"""
from __future__ import annotations

from typing import Any

import httpx

from case_bridge.outbox import EffectError, PermanentEffectError, register_effect
from hotline.settings import get_settings


@register_effect("webhook")
def post_webhook(payload: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    url = payload.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PermanentEffectError(f"webhook url {url!r} is not an http(s) URL")
    try:
        response = httpx.post(url, json=payload.get("body", {}), timeout=get_settings().webhook_timeout_seconds,
                              headers={"Idempotency-Key": idempotency_key, "User-Agent": "hotline12319"})
    except httpx.HTTPError as exc:
        raise EffectError(f"POST {url}: {type(exc).__name__}: {exc}") from None
    if response.is_success:
        return {"status": response.status_code}
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise PermanentEffectError(f"POST {url}: HTTP {response.status_code} {response.text[:200]}")
    raise EffectError(f"POST {url}: HTTP {response.status_code}")
