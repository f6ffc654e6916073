"""What the service extensions share: opaque page tokens (an offset, or a
cursor of several parts), and a sliding-window rate limit with the control
endpoint body that sets it. Knows nothing of any service; each caller turns
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


def encode_cursor_token(prefix: str, *parts: Any) -> str:
    """A URL-safe token of `prefix` and `parts` joined by ':'."""
    return base64.urlsafe_b64encode(f"{prefix}{':'.join(str(p) for p in parts)}".encode()).decode()


def decode_cursor_token(prefix: str, token: Any) -> list[str]:
    """The parts of a token `encode_cursor_token` made; ValueError for any other."""
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except Exception as e:
        raise ValueError("not a token") from e
    if not text.startswith(prefix):
        raise ValueError("not a token")
    return text[len(prefix):].split(":")


def admit(times: deque, now: float, limit: int, window: float) -> bool:
    """At most `limit` requests in any `window` seconds: records `now` and
    says yes, or says no."""
    while times and times[0] <= now - window:
        times.popleft()
    if len(times) >= limit:
        return False
    times.append(now)
    return True


MAX_RATE_LIMIT = 100000  # requests in a window, at most
MAX_RATE_WINDOW = 86400  # seconds


def parse_rate_limit(body: dict, limit: int, window: float) -> tuple[int, float]:
    """A control endpoint's {"limit", "window_seconds"} (one left out keeps
    its current value, given) -> (limit, window); ValueError says why not."""
    if not body or set(body) - {"limit", "window_seconds"}:
        raise ValueError("body takes limit and/or window_seconds")
    limit = body.get("limit", limit)
    window = body.get("window_seconds", window)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RATE_LIMIT:
        raise ValueError(f"limit must be an integer 1..{MAX_RATE_LIMIT}")
    if not isinstance(window, (int, float)) or isinstance(window, bool) or not 0 < window <= MAX_RATE_WINDOW:
        raise ValueError(f"window_seconds must be a number > 0 and <= {MAX_RATE_WINDOW}")
    return limit, float(window)
