"""Injected faults: what POST /_rekey/faults queues, and how each shows.

A fault matches requests by ``service:Operation`` (or ``service:*``, or
``*``), optionally in one account, for a count of requests or for some
seconds. The middleware (harness.py) takes the first match of each request
and shows it as its kind says. See README.md ("Control endpoints").
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import securityhub  # beside this file: its 12-digit account id rule
from protocol import HttpError, RequestInfo

# How a fault shows: an AWS error answer; the answer held back `delay`
# seconds (then the request is served: a client that gave up meanwhile lost
# a reply to a request that happened); the connection closed unserved; or
# the request served and the connection closed before the reply; or the
# request served and only the first half of its answer sent (well-formed
# HTTP around a broken body); or, as a proxy or load balancer in front of
# AWS would, an HTML error page with `status` (default 500), unserved.
FAULT_KINDS = ("error", "slow", "drop", "lost", "garbled", "html")

# What a proxy answers: HTML, not the service's protocol, and (like
# werkzeug's own error pages) without a closing </html>.
HTML_ERROR_PAGE = ("<!doctype html>\n<html lang=en>\n<title>{status} {reason}</title>\n"
                   "<h1>{reason}</h1>\n<p>The server encountered an error and could not complete your request.</p>\n")
MAX_FAULT_DELAY = 300


@dataclass
class Fault:
    operation: str
    code: str
    status: int
    message: str
    remaining: int | None  # None for a timed fault
    account: str | None = None  # only requests acting in this account
    until: float | None = None  # a timed fault: time.monotonic() when it ends
    kind: str = "error"
    delay: float = 0.0  # seconds, for "slow"

    def expired(self, now: float) -> bool:
        return self.until is not None and now >= self.until

    def matches(self, info: RequestInfo, account: str) -> bool:
        if self.operation == "*":
            op_ok = True
        elif self.operation.endswith(":*"):
            op_ok = self.operation[:-2] == info.service
        else:
            op_ok = self.operation == info.op_key
        return op_ok and (self.account is None or account == self.account)

    def use(self) -> bool:
        """Uses up one match; True when the fault is spent."""
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining <= 0

    def view(self, now: float) -> dict:
        out: dict[str, Any] = {"operation": self.operation, "kind": self.kind, "remaining": self.remaining}
        if self.kind == "error":
            out.update(code=self.code, status=self.status, message=self.message)
        if self.kind == "html":
            out["status"] = self.status
        if self.kind == "slow":
            out["delay"] = self.delay
        if self.account is not None:
            out["account"] = self.account
        if self.until is not None:
            out["seconds_left"] = round(max(0.0, self.until - now), 3)
        return out


def drop_connection(environ: dict) -> None:
    """Closes the client's connection with no answer. The exception is the
    one werkzeug expects of a vanished client: it logs nothing and moves on."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    raise ConnectionResetError("connection dropped by an injected fault")


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


MAX_FAULT_SECONDS = 86400


def parse_fault_lifetime(body: dict) -> tuple[int | None, float | None]:
    """A fault's "count" (default 1) or "seconds" (not both) -> (remaining, until)."""
    if "count" in body and "seconds" in body:
        raise HttpError(400, "give count or seconds, not both")
    if "seconds" in body:
        seconds = body["seconds"]
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) \
                or not 0 < seconds <= MAX_FAULT_SECONDS:
            raise HttpError(400, f"seconds must be a number > 0 and <= {MAX_FAULT_SECONDS}")
        return None, time.monotonic() + seconds
    count = body.get("count", 1)
    if not positive_int(count):
        raise HttpError(400, "count must be a positive integer")
    return count, None


def parse_fault(body: dict) -> Fault:
    """A fault from the body of POST /_rekey/faults; HttpError 400 if it is not one."""
    unknown = sorted(set(body) - {"operation", "kind", "code", "status", "message", "delay", "count", "seconds",
                                  "account"})
    if unknown:
        raise HttpError(400, f"unknown field(s) {', '.join(unknown)}")
    op = body.get("operation")
    kind = body.get("kind", "error")
    if kind not in FAULT_KINDS:
        raise HttpError(400, f"kind must be one of {', '.join(FAULT_KINDS)}")
    if (kind == "error") != ("code" in body):
        raise HttpError(400, "code is required for kind error, and only for it")
    if (kind == "slow") != ("delay" in body):
        raise HttpError(400, "delay is required for kind slow, and only for it")
    delay = body.get("delay", 0.0)
    if kind == "slow" and (not isinstance(delay, (int, float)) or isinstance(delay, bool)
                           or not 0 < delay <= MAX_FAULT_DELAY):
        raise HttpError(400, f"delay must be a number of seconds > 0 and <= {MAX_FAULT_DELAY}")
    code = body.get("code", kind)
    status = body.get("status", 500 if kind == "html" else 400)
    message = body.get("message", "")
    account = body.get("account")
    if not isinstance(op, str) or not (op == "*" or re.match(r"^[^:\s]+:\S+$", op)):
        raise HttpError(400, "operation must be 'service:Operation', 'service:*' or '*'")
    if not isinstance(code, str) or not code:
        raise HttpError(400, "code must be a non-empty string")
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise HttpError(400, "status must be an integer 400..599")
    if not isinstance(message, str):
        raise HttpError(400, "message must be a string")
    if account is not None and not (isinstance(account, str) and securityhub.ACCOUNT_RE.match(account)):
        raise HttpError(400, f"account must be a 12-digit account id string, got {account!r}")
    remaining, until = parse_fault_lifetime(body)
    return Fault(op, code, status, message, remaining, account, until, kind, float(delay))
