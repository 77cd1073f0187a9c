"""Verifying a webhook delivery's Standard Webhooks signature (docs/webhooks.md,
"Verifying a delivery"): HMAC-SHA256 with the base64-decoded secret over
``<webhook-id>.<webhook-timestamp>.<raw body>``, compared in constant time with each
``v1,`` entry of ``webhook-signature``, and a timestamp within a tolerance of now."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Mapping, Optional, Union

from .errors import FleetError

#: how far (seconds) a delivery's timestamp may be from the receiver's clock, either way
DEFAULT_TOLERANCE_S = 300


class InvalidSignature(FleetError):
    """The delivery is not genuine: bad or missing headers, a signature that matches no
    ``v1`` entry, or a timestamp outside the tolerance."""


def _key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    b64 = secret[len("whsec_"):]
    try:
        return base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except binascii.Error as e:
        raise ValueError(f"the webhook secret is not whsec_ + base64: {e}") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of a delivery (what the gateway sends)."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: Union[bytes, str], *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: Optional[float] = None) -> Any:
    """Checks a delivery and returns its parsed JSON body; raises InvalidSignature.

    ``headers``: the request's headers (any mapping; names compared without case).
    ``body``: the raw body, exactly as received (before any JSON parsing).
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id = h.get("webhook-id", "")
    ts = h.get("webhook-timestamp", "")
    if not msg_id:
        raise InvalidSignature("no webhook-id header")
    if not (ts.isascii() and ts.isdigit()):
        raise InvalidSignature("no valid webhook-timestamp header")
    now = time.time() if now is None else now
    if abs(now - int(ts)) > tolerance_s:
        raise InvalidSignature(f"webhook-timestamp {ts} is more than {tolerance_s} s from now")
    expected = sign(secret, msg_id, int(ts), raw)[3:].encode()
    ok = False
    for entry in h.get("webhook-signature", "").split():
        version, _, sig = entry.partition(",")
        # every entry is compared, so the time taken does not tell which one matched
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            ok = True
    if not ok:
        raise InvalidSignature("no v1 signature of webhook-signature matches")
    return json.loads(raw)


def is_valid(secret: str, headers: Mapping[str, str], body: Union[bytes, str], *,
             tolerance_s: float = DEFAULT_TOLERANCE_S, now: Optional[float] = None) -> bool:
    """Whether the delivery is genuine (verify() without the exception)."""
    try:
        verify(secret, headers, body, tolerance_s=tolerance_s, now=now)
        return True
    except (InvalidSignature, ValueError):
        return False
