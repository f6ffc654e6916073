"""The harness side of Security Hub: the first extension.

The harness answers GetFindings, BatchUpdateFindings, BatchImportFindings,
EnableSecurityHub, DisableSecurityHub and DescribeHub itself from the store
in securityhub.py, with IAM.3 findings synthesised from moto's IAM state
(evaluate_securityhub). Other Security Hub calls reach moto, unless
Security Hub is disabled in the caller's account. /_rekey/securityhub
re-evaluates, shows and steers the store. See README.md ("Security Hub").
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable

import securityhub  # beside this file: the Security Hub finding store
from protocol import HttpError, RequestInfo, aws_error, json_object_body, request_account
from scenario import parse_rfc3339, utc_now_whole
from seeding import iam_backend

# --------------------------------------------------------------------------
# The extension: the Security Hub calls the harness answers itself
# --------------------------------------------------------------------------

SECURITY_HUB = securityhub.SecurityHub()

HubHandler = Callable[[str, str, dict, datetime], dict]  # (account, region, body, now) -> response
SECURITYHUB_OPERATIONS: dict[str, HubHandler] = {
    "GetFindings": lambda acct, region, body, now: SECURITY_HUB.get_findings(acct, region, body),
    "BatchUpdateFindings": SECURITY_HUB.batch_update,
    "BatchImportFindings": SECURITY_HUB.batch_import,
    "DisableSecurityHub": lambda acct, region, body, now: SECURITY_HUB.disable_hub(acct),
    "DescribeHub": lambda acct, region, body, now: SECURITY_HUB.describe_hub(acct, region, now),
}


def hub_response(payload: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("x-amzn-RequestId", str(uuid.uuid4())), ("Content-Type", "application/json")]
    return 200, headers, json.dumps(payload).encode()


def hub_error(info: RequestInfo, e: securityhub.HubError) -> tuple[int, list[tuple[str, str]], bytes]:
    """Security Hub's error body carries Code and Message (and x-amzn-ErrorType)."""
    status, headers, _ = aws_error(info, e.code, e.message, e.status)
    return status, headers, json.dumps({"Code": e.code, "Message": e.message}).encode()


def hub_body(body: bytes) -> dict:
    return json_object_body(body, securityhub.invalid_input)


def securityhub_extension(_harness: "Harness", environ: dict, info: RequestInfo,
                          body: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    if info.service != "securityhub":
        return None
    account = request_account(environ, info)
    region = info.region or securityhub.DEFAULT_REGION
    now = utc_now_whole()
    try:
        if info.operation == "EnableSecurityHub":
            return hub_response(SECURITY_HUB.enable_hub(account, now))
        SECURITY_HUB.require_enabled(account)
        handler = SECURITYHUB_OPERATIONS.get(info.operation)
        if handler is None:
            return None  # moto answers the other Security Hub calls
        return hub_response(handler(account, region, hub_body(body), now))
    except securityhub.HubError as e:
        return hub_error(info, e)


# --------------------------------------------------------------------------
# IAM.3 findings from moto's IAM state, and the control endpoints:
# /_rekey/securityhub
# --------------------------------------------------------------------------


def iam_user_snapshots(account_id: str) -> list[securityhub.UserSnapshot]:
    """What IAM.3 evaluates, read from moto's IAM backend."""
    return [
        securityhub.UserSnapshot(
            name=u.name, arn=u.arn, user_id=u.id, path=u.path, created=u.create_date.replace(microsecond=0),
            keys=[(k.status, k.create_date.replace(microsecond=0)) for k in list(u.access_keys)])
        for u in list(iam_backend(account_id).users.values())
    ]


def evaluate_securityhub(account_id: str, as_of: datetime, max_age_days: int) -> dict:
    return SECURITY_HUB.evaluate(account_id, iam_user_snapshots(account_id), as_of,
                                 timedelta(days=max_age_days), utc_now_whole())


def securityhub_control(method: str, parts: list[str], body: Any, account: str, default_as_of: datetime,
                        max_age_days: int) -> dict:
    hub = SECURITY_HUB
    if parts == ["evaluate"] and method == "POST":
        if set(body) - {"as_of"}:
            raise HttpError(400, "body must be {} or {\"as_of\": RFC3339}")
        as_of = parse_rfc3339(body["as_of"], "as_of") if "as_of" in body else default_as_of
        return evaluate_securityhub(account, as_of, max_age_days)
    if parts == ["findings"] and method == "GET":
        return hub.findings_view(account)
    if parts == ["enabled"] and method == "GET":
        return {"account": account, "enabled": hub.account(account).enabled}
    if parts == ["enabled"] and method == "POST":
        if set(body) != {"enabled"} or not isinstance(body["enabled"], bool):
            raise HttpError(400, "body must be {\"enabled\": true|false}")
        hub.set_enabled(account, body["enabled"])
        return {"account": account, "enabled": body["enabled"]}
    if parts == ["unprocessed"] and method == "POST":
        return hub.add_unprocessed(account, body)
    if parts == ["stats"] and method == "GET":
        return hub.stats(account)
    if parts == ["stats", "reset"] and method == "POST":
        return hub.reset_stats(account)
    if parts == ["import-rate-limit"] and method == "GET":
        return hub.rate_limit()
    if parts == ["import-rate-limit"] and method == "POST":
        return hub.set_rate_limit(body)
    raise HttpError(404, f"no harness endpoint {method} /_rekey/securityhub/{'/'.join(parts)}")
