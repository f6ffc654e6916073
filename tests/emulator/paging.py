"""What the service extensions share: opaque offset page tokens and a
sliding-window rate limit. Knows nothing of any service; each caller turns
a ValueError or a refusal into its own service's error."""

from __future__ import annotations

import base64
from collections import deque
from typing import Any


def encode_offset_token(prefix: str, offset: int) -> str:
    return base64.b64encode(f"{prefix}{offset}".encode()).decode()


def decode_offset_token(prefix: str, token: Any) -> int:
    """The offset in a token `encode_offset_token` made; ValueError for any other."""
    try:
        text = base64.b64decode(str(token).encode(), validate=True).decode()
    except Exception as e:
        raise ValueError("not a token") from e
    if not text.startswith(prefix):
        raise ValueError("not a token")
    offset = int(text[len(prefix):])
    if offset < 0:
        raise ValueError("not a token")
    return offset


def admit(times: deque, now: float, limit: int, window: float) -> bool:
    """At most `limit` requests in any `window` seconds: records `now` and
    says yes, or says no."""
    while times and times[0] <= now - window:
        times.popleft()
    if len(times) >= limit:
        return False
    times.append(now)
    return True
