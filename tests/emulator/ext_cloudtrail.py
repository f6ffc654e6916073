"""The harness side of CloudTrail: who a request's key is, the scenario's
seeded history, LookupEvents, and /_rekey/cloudtrail.

The middleware (harness.py) records every AWS request it serves in
CLOUDTRAIL (the store in cloudtrail.py), with the userIdentity of its access
key (key_identity: an IAM user, an AssumeRole session, or Unknown) and its
source address. cloudtrail_extension answers LookupEvents over the recorded
and seeded events; moto answers the other CloudTrail calls.
See README.md ("CloudTrail").
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import cloudtrail  # beside this file: CloudTrail event history and LookupEvents
from protocol import HttpError, RequestInfo, account_param, aws_error, caller_arn, json_answer, json_object_body, \
    request_account
from scenario import DEFAULT_ACCOUNT_ID, CloudTrailSpec, Scenario
from seeding import find_key, iam_backend

# --------------------------------------------------------------------------
# Who an access key is (the event's userIdentity), and the scenario's seeded
# history (the store and LookupEvents are in cloudtrail.py)
# --------------------------------------------------------------------------

CLOUDTRAIL = cloudtrail.CloudTrail()
IDENTITIES: dict[tuple[str, str | None], cloudtrail.Identity] = {}  # (account, key id) -> who
MAX_IDENTITIES = 100_000


def resolve_identity(account: str, access_key_id: str | None) -> cloudtrail.Identity:
    """The userIdentity of a key in moto's IAM of that account: an IAM user,
    an AssumeRole session (ASIA keys), or Unknown (the static `testing` keys)."""
    key = iam_backend(account).access_keys.get(access_key_id) if access_key_id else None
    if key is None:
        return cloudtrail.unknown_identity(account)
    if key.user_name is not None:
        user = iam_backend(account).users.get(key.user_name)
        if user is None:  # deleted before its key was first seen
            return cloudtrail.Identity("IAMUser", account, None, f"arn:aws:iam::{account}:user/{key.user_name}",
                                       key.user_name, key.user_name)
        return cloudtrail.Identity("IAMUser", account, user.id, user.arn, user.name, user.name)
    if key.role_arn:
        return assumed_role_identity(account, access_key_id, key.role_arn)
    return cloudtrail.unknown_identity(account)


def assumed_role_identity(account: str, access_key_id: str, role_arn: str) -> cloudtrail.Identity:
    from moto.sts.models import sts_backends

    session = sts_backends[account]["aws"].get_assumed_role_from_access_key(access_key_id)
    role_name = role_arn.rsplit("/", 1)[-1]
    if session is None:
        return cloudtrail.Identity("AssumedRole", account, None, None, None, None,
                                   {"type": "Role", "arn": role_arn, "accountId": account, "userName": role_name})
    principal = session.user_id  # AROA...:session-name
    issuer = {"type": "Role", "principalId": principal.split(":", 1)[0], "arn": role_arn,
              "accountId": account, "userName": role_name}
    return cloudtrail.Identity("AssumedRole", account, principal, session.arn, None, session.session_name, issuer)


def key_identity(account: str, access_key_id: str | None) -> cloudtrail.Identity:
    """resolve_identity, cached: a key's owner is read when the key is first seen."""
    found = IDENTITIES.get((account, access_key_id))
    if found is None:
        found = resolve_identity(account, access_key_id)
        if len(IDENTITIES) >= MAX_IDENTITIES:
            IDENTITIES.clear()
        IDENTITIES[(account, access_key_id)] = found
    return found


def cloudtrail_blocks(scenario: Scenario) -> list[tuple[str, CloudTrailSpec]]:
    return [(DEFAULT_ACCOUNT_ID, scenario.cloudtrail), *((a.id, a.cloudtrail) for a in scenario.accounts)]


def epoch(dt: datetime) -> int:
    """Naive UTC -> epoch seconds."""
    return int(dt.replace(tzinfo=timezone.utc).timestamp())


def seed_cloudtrail(scenario: Scenario, started: int) -> int:
    """Each account's CloudTrail switch and seeded history; returns how many events."""
    anchor = epoch(scenario.as_of) if scenario.cloudtrail_anchor == "as_of" else started
    items = []
    for account_id, spec in cloudtrail_blocks(scenario):
        if not spec.enabled:
            CLOUDTRAIL.set_enabled(account_id, False)
        backend = iam_backend(account_id)
        for user_name, index, series in spec.events:
            akid = backend.users[user_name].access_keys[index].access_key_id
            items.append((account_id, akid, key_identity(account_id, akid), series))
    return CLOUDTRAIL.add_series(items, anchor, "scenario")


# --------------------------------------------------------------------------
# The extension: LookupEvents
# --------------------------------------------------------------------------

CLOUDTRAIL_TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."


def cloudtrail_body(body: bytes) -> dict:
    return json_object_body(body, cloudtrail.invalid_parameter)


def cloudtrail_extension(_harness: "Harness", environ: dict, info: RequestInfo,
                         body: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """CloudTrail LookupEvents, over the recorded and seeded events; moto
    answers the other CloudTrail calls."""
    if info.operation != "LookupEvents" or not (
            info.service == "cloudtrail"
            or (environ.get("HTTP_X_AMZ_TARGET") or "").startswith(CLOUDTRAIL_TARGET_PREFIX)):
        return None
    account = request_account(environ, info)
    region = info.region or cloudtrail.GLOBAL_REGION
    try:
        return json_answer(info, CLOUDTRAIL.lookup_events(account, region, cloudtrail_body(body),
                                                          lambda: caller_arn(info, account)))
    except cloudtrail.CtError as e:
        return aws_error(info, e.code, e.message, e.status)


# --------------------------------------------------------------------------
# Recording a request, and the control endpoints: /_rekey/cloudtrail
# --------------------------------------------------------------------------


def source_ip(environ: dict) -> str:
    """The caller's address: the first hop of X-Forwarded-For (so that a test
    can play several hosts), else the peer's address."""
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded:
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first[:253]
    return environ.get("REMOTE_ADDR") or "127.0.0.1"


def record_request(environ: dict, info: RequestInfo, account: str, status: str) -> None:
    """One request the harness served, as an event (the hot path: keep it small)."""
    # Interned: 100,000 events of a few hosts share their agent and address strings.
    CLOUDTRAIL.record(account, info.region, info.service, info.operation, info.access_key_id,
                      key_identity(account, info.access_key_id), sys.intern(source_ip(environ)),
                      sys.intern(environ.get("HTTP_USER_AGENT", "")), int(status[:3]), info.parameters)


MAX_EVENTS_VIEW = 100_000


def events_limit(query: dict[str, str]) -> int:
    """GET /_rekey/cloudtrail/events?limit=: 1..100000, default 1000."""
    raw = query.get("limit", "1000")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_EVENTS_VIEW:
        raise HttpError(400, f"limit must be an integer 1..{MAX_EVENTS_VIEW}, got {raw!r}")
    return int(raw)


def add_cloudtrail_events(body: dict, account: str | None) -> dict:
    """POST /_rekey/cloudtrail/events: a series of calls made with a user's
    key, the newest `ago` before now."""
    access_key_id = body.get("access_key_id")
    if not isinstance(access_key_id, str) or not access_key_id:
        raise HttpError(400, "access_key_id: the id of an IAM user's access key required")
    try:
        series = cloudtrail.parse_series(body, "body", frozenset({"access_key_id"}))
    except cloudtrail.SpecError as e:
        raise HttpError(400, str(e)) from None
    found = find_key(access_key_id, account)
    if found is None:
        raise HttpError(404, f"no access key {access_key_id}" + (f" in account {account}" if account else ""))
    acct = found[0]
    added = CLOUDTRAIL.add_series([(acct, access_key_id, key_identity(acct, access_key_id), series)],
                                  CLOUDTRAIL.now(), "control")
    return {"account": acct, "access_key_id": access_key_id, "added": added}


def cloudtrail_control(method: str, parts: list[str], query: dict[str, str], body: Any,
                       raw_account: str | None) -> dict:
    trail = CLOUDTRAIL
    account = account_param(raw_account)
    only = account if raw_account is not None else None  # ?account narrows; else every account
    if parts == ["events"] and method == "GET":
        return trail.events_view(query.get("access_key_id") or None, only, events_limit(query))
    if parts == ["events"] and method == "POST":
        return add_cloudtrail_events(body, only)
    if parts == ["events"] and method == "DELETE":
        return trail.clear(only)
    if parts == ["stats"] and method == "GET":
        return trail.stats(account)
    if parts == ["stats", "reset"] and method == "POST":
        return trail.reset_stats(account)
    if parts == ["rate-limit"] and method == "GET":
        return trail.rate_limit()
    if parts == ["rate-limit"] and method == "POST":
        return trail.set_rate_limit(body)
    if parts == ["enabled"] and method == "GET":
        return trail.enabled(account)
    if parts == ["enabled"] and method == "POST":
        if set(body) != {"enabled"} or not isinstance(body["enabled"], bool):
            raise HttpError(400, "body must be {\"enabled\": true|false}")
        return trail.set_enabled(account, body["enabled"])
    raise HttpError(404, f"no harness endpoint {method} /_rekey/cloudtrail/{'/'.join(parts)}")
