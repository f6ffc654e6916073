"""The scenario file: what the harness seeds, as plain data.

Reads and checks a scenario (users, keys, tags, bulk users, accounts,
Organizations, SNS topics, Security Hub and CloudTrail settings) into the
dataclasses below, and holds the time rules every other module uses: moto
stores naive UTC datetimes with whole seconds, and so does everything here.
Needs no moto, so that a bad scenario fails fast (exit code 2, InputError).
See README.md ("Scenario format") for the format.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import cloudtrail  # beside this file: a seeded series of CloudTrail events
import organizations  # beside this file: sts:AssumeRole's ExternalId rule

DEFAULT_ACCOUNT_ID = "123456789012"  # the management account; the scenario's own users live here

USER_NAME_RE = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
# IAM path: "/" or "/" + printable ASCII (no spaces) + "/", at most 512 chars.
PATH_RE = re.compile(r"^/(?:[\x21-\x7e]+/)?$")
DURATION_RE = re.compile(r"^(?:\d+[dhms])+$")
DURATION_PART_RE = re.compile(r"(\d+)([dhms])")
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
OWNER_TAG_KEYS = ("Owner", "owner", "Team")


class InputError(Exception):
    """A bad scenario file or bad command-line value (exit code 2)."""


# --------------------------------------------------------------------------
# Time helpers. moto stores naive UTC datetimes (moto.core.utils.utcnow()
# returns datetime.now(UTC).replace(tzinfo=None)), so everything handed to
# moto is naive UTC with whole seconds.
# --------------------------------------------------------------------------


def parse_rfc3339(value: Any, what: str) -> datetime:
    """Parse an RFC 3339 timestamp with Z or an offset -> naive UTC, whole seconds."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{what}: expected an RFC 3339 timestamp string, got {value!r}")
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what}: not an RFC 3339 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        raise InputError(f"{what}: timestamp needs a Z or +hh:mm offset: {value!r}")
    return dt.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)


def fmt_time(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(value: Any, what: str) -> timedelta:
    if not isinstance(value, str) or not DURATION_RE.match(value):
        raise InputError(
            f"{what}: expected a duration like '90d', '89d23h59m59s' or '0s', got {value!r}"
        )
    seconds = sum(int(n) * UNIT_SECONDS[u] for n, u in DURATION_PART_RE.findall(value))
    return timedelta(seconds=seconds)


def utc_now_whole() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


# --------------------------------------------------------------------------
# Scenario model and loading
# --------------------------------------------------------------------------


@dataclass
class KeySpec:
    status: str
    created: datetime
    last_used: tuple[datetime, str, str] | None  # (at, service, region)


@dataclass
class UserSpec:
    name: str
    path: str
    tags: list[tuple[str, str]]
    created: datetime
    keys: list[KeySpec] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # IAM groups, created on first use


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise InputError(msg)


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    _expect(not unknown, f"{where}: unknown field(s) {', '.join(unknown)}")


def _parse_tags(raw: Any, where: str) -> list[tuple[str, str]]:
    if raw is None:
        return []
    _expect(isinstance(raw, dict), f"{where}.tags: expected an object of strings")
    _expect(len(raw) <= 50, f"{where}.tags: at most 50 tags")
    tags = []
    for k, v in raw.items():
        _expect(isinstance(v, str), f"{where}.tags.{k}: value must be a string")
        _expect(1 <= len(k) <= 128, f"{where}.tags: key {k!r} must be 1-128 chars")
        _expect(len(v) <= 256, f"{where}.tags.{k}: value longer than 256 chars")
        tags.append((k, v))
    lowered = [k.lower() for k, _ in tags]
    _expect(
        len(set(lowered)) == len(lowered),
        f"{where}.tags: IAM tag keys are case-insensitive, duplicates found",
    )
    return tags


def _parse_key(raw: Any, as_of: datetime, where: str) -> KeySpec:
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    _check_keys(raw, {"status", "age", "last_used"}, where)
    status = raw.get("status", "Active")
    _expect(status in ("Active", "Inactive"), f"{where}.status: must be Active or Inactive")
    _expect("age" in raw, f"{where}.age: required")
    age = parse_duration(raw["age"], f"{where}.age")
    created = as_of - age
    lu_raw = raw.get("last_used")
    last_used = None
    if lu_raw is not None:
        lw = f"{where}.last_used"
        _expect(isinstance(lu_raw, dict), f"{lw}: expected an object or null")
        _check_keys(lu_raw, {"ago", "service", "region"}, lw)
        _expect("ago" in lu_raw, f"{lw}.ago: required")
        ago = parse_duration(lu_raw["ago"], f"{lw}.ago")
        _expect(ago <= age, f"{lw}.ago: a key cannot be used before it was created (ago > age)")
        service = lu_raw.get("service", "s3")
        region = lu_raw.get("region", "us-east-1")
        _expect(isinstance(service, str) and service, f"{lw}.service: non-empty string")
        _expect(isinstance(region, str) and region, f"{lw}.region: non-empty string")
        last_used = (as_of - ago, service, region)
    return KeySpec(status=status, created=created, last_used=last_used)


def _parse_user(raw: Any, as_of: datetime, where: str, scope: str = "") -> UserSpec:
    """One scenario user; `scope` prefixes messages ("accounts[0] (111111111111) ")."""
    where = scope + where
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    _check_keys(raw, {"name", "path", "tags", "age", "keys", "groups"}, where)
    name = raw.get("name")
    _expect(
        isinstance(name, str) and bool(USER_NAME_RE.match(name)),
        f"{where}.name: 1-64 chars of letters, digits and +=,.@_- required, got {name!r}",
    )
    where = f"{scope}user {name!r}"
    path = raw.get("path", "/")
    _expect(
        isinstance(path, str) and len(path) <= 512 and bool(PATH_RE.match(path)),
        f"{where}.path: must be '/' or like '/a/b/', got {path!r}",
    )
    tags = _parse_tags(raw.get("tags"), where)
    keys_raw = raw.get("keys", [])
    _expect(isinstance(keys_raw, list), f"{where}.keys: expected a list")
    _expect(len(keys_raw) <= 2, f"{where}.keys: IAM allows at most 2 access keys per user")
    keys = [_parse_key(k, as_of, f"{where}.keys[{i}]") for i, k in enumerate(keys_raw)]
    # Real AWS hands out keys in creation order; seed them that way.
    keys.sort(key=lambda k: k.created)
    oldest_key = min((k.created for k in keys), default=as_of)
    if "age" in raw:
        created = as_of - parse_duration(raw["age"], f"{where}.age")
        _expect(created <= oldest_key, f"{where}.age: user must be at least as old as its oldest key")
    else:
        created = oldest_key
    groups = raw.get("groups", [])
    _expect(isinstance(groups, list) and all(isinstance(g, str) and GROUP_NAME_RE.match(g) for g in groups),
            f"{where}.groups: a list of IAM group names (1-128 chars of letters, digits and +=,.@_-)")
    return UserSpec(name=name, path=path, tags=tags, created=created, keys=keys, groups=list(dict.fromkeys(groups)))


GROUP_NAME_RE = re.compile(r"^[\w+=,.@-]{1,128}$")
OU_ID_RE = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")

BULK_NAME_SUFFIXES = ["+ci", "=ops", ",legacy", ".svc", "@corp", "_batch", "-deploy"]
BULK_PATHS = ["/ci/", "/svc/batch/", "/teams/payments/", "/teams/data/"]
BULK_SERVICES = ["s3", "ec2", "sts", "s3", "iam", "secretsmanager"]


def generate_bulk(n: int, seed: int, prefix: str, as_of: datetime) -> list[UserSpec]:
    """Deterministic synthetic users: same (n, seed, prefix, as_of) -> same users."""
    rng = random.Random(seed)
    day = 86400
    users = []
    for i in range(n):
        name = f"{prefix}{i:05d}"
        if rng.random() < 0.10:
            name += rng.choice(BULK_NAME_SUFFIXES)
        path = rng.choice(BULK_PATHS) if rng.random() < 0.20 else "/"
        r = rng.random()
        nkeys = 0 if r < 0.05 else (1 if r < 0.55 else 2)
        ages = []
        for _ in range(nkeys):
            b = rng.random()
            if b < 0.45:  # comfortably fresh
                secs = rng.randint(0, 76 * day)
            elif b < 0.60:  # around the 76-day warning and 90-day max-age boundaries
                secs = rng.randint(75 * day, 91 * day)
            else:  # old, up to 400 days
                secs = rng.randint(90 * day, 400 * day)
            ages.append(secs)
        ages.sort(reverse=True)  # oldest first = creation order
        keys = []
        for k, secs in enumerate(ages):
            if nkeys == 2 and k == 0:
                status = "Inactive" if rng.random() < 0.5 else "Active"
            else:
                status = "Inactive" if rng.random() < 0.10 else "Active"
            if rng.random() < 1 / 3:
                last_used = None
            else:
                max_ago = min(secs, 60 * day)
                ago = rng.randint(min(3600, max_ago), max_ago)
                last_used = (as_of - timedelta(seconds=ago), rng.choice(BULK_SERVICES), "us-east-1")
            keys.append(KeySpec(status=status, created=as_of - timedelta(seconds=secs), last_used=last_used))
        user_age = (ages[0] if ages else 0) + rng.randint(0, 30 * day)
        tags: list[tuple[str, str]] = []
        if rng.random() < 0.5:
            tags.append((rng.choice(OWNER_TAG_KEYS), f"team-{rng.randint(1, 12)}"))
        if rng.random() < 0.2:
            tags.append(("CostCenter", f"cc-{rng.randint(100, 999)}"))
        users.append(
            UserSpec(name=name, path=path, tags=tags, created=as_of - timedelta(seconds=user_age), keys=keys)
        )
    return users


DEFAULT_ROLE_NAME = "OrganizationAccountAccessRole"
DEFAULT_ORG_ID = "o-rekeyexample"
ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
ACCOUNT_NAME_RE = re.compile(r"^[\x20-\x7e]{1,50}$")
EMAIL_RE = re.compile(r"^[^\s@]{1,64}@[^\s@]+\.[^\s@]+$")
ORG_ID_RE = re.compile(r"^o-[a-z0-9]{10,32}$")
ACCOUNT_STATUSES = ("ACTIVE", "SUSPENDED")
MAX_ACCOUNTS = 1000
MAX_BULK_ACCOUNT_USERS = 1_000_000  # accounts_bulk: count * users


@dataclass
class OrganizationSpec:
    id: str
    role_name: str  # the role that "role": true creates in member accounts


@dataclass
class CloudTrailSpec:
    """An account's "cloudtrail": whether LookupEvents is allowed, and its seeded
    history as (user name, key index oldest first, series)."""

    enabled: bool = True
    events: list[tuple[str, int, cloudtrail.SeriesSpec]] = field(default_factory=list)


@dataclass
class AccountSpec:
    """A member account: its Organizations entry, its AssumeRole target, its users."""

    id: str
    name: str
    email: str
    status: str  # ACTIVE | SUSPENDED
    role_name: str | None  # the role created in the account; None: no role
    external_id: str | None  # AssumeRole must pass this ExternalId
    users: list[UserSpec] = field(default_factory=list)
    cloudtrail: CloudTrailSpec = field(default_factory=CloudTrailSpec)
    ous: list[str] = field(default_factory=list)  # the OUs the account is in, outermost first


@dataclass
class Scenario:
    as_of: datetime
    users: list[UserSpec]
    securityhub_enabled: bool = True
    sns_topics: list[str] = field(default_factory=list)
    organization: OrganizationSpec | None = None
    accounts: list[AccountSpec] = field(default_factory=list)
    cloudtrail: CloudTrailSpec = field(default_factory=CloudTrailSpec)  # the default account's
    cloudtrail_anchor: str = "now"  # seeded events are "ago" before: now (the start) | as_of


# SNS topic names: 1-256 letters, digits, - and _; a FIFO topic ends in .fifo.
SNS_TOPIC_RE = re.compile(r"^(?:[A-Za-z0-9_-]{1,256}|[A-Za-z0-9_-]{1,251}\.fifo)$")


def _parse_securityhub(raw: Any) -> bool:
    """The scenario's "securityhub" object -> whether Security Hub is enabled."""
    _expect(isinstance(raw, dict), "scenario.securityhub: expected an object")
    _check_keys(raw, {"enabled"}, "scenario.securityhub")
    enabled = raw.get("enabled", True)
    _expect(isinstance(enabled, bool), "scenario.securityhub.enabled: true or false required")
    return enabled


def _parse_sns_topics(raw: Any) -> list[str]:
    _expect(isinstance(raw, list), "scenario.sns_topics: expected a list of topic names")
    for i, name in enumerate(raw):
        _expect(isinstance(name, str) and bool(SNS_TOPIC_RE.match(name)),
                f"scenario.sns_topics[{i}]: 1-256 chars of letters, digits, - and _ "
                f"(optionally ending in .fifo) required, got {name!r}")
    _expect(len(set(raw)) == len(raw), "scenario.sns_topics: duplicate topic name")
    return list(raw)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_bulk(bulk: Any, as_of: datetime, where: str) -> list[UserSpec]:
    """A "bulk" object -> its synthetic users."""
    _expect(isinstance(bulk, dict), f"{where}: expected an object")
    _check_keys(bulk, {"users", "seed", "prefix"}, where)
    n = bulk.get("users")
    seed = bulk.get("seed", 7)
    prefix = bulk.get("prefix", "bulk-")
    _expect(_is_int(n) and 0 <= n <= 100000, f"{where}.users: integer 0..100000 required")
    _expect(_is_int(seed), f"{where}.seed: integer required")
    _expect(isinstance(prefix, str) and re.match(r"^[A-Za-z0-9+=,.@_-]{0,40}$", prefix) is not None,
            f"{where}.prefix: up to 40 chars of letters, digits and +=,.@_-")
    return generate_bulk(n, seed, prefix, as_of)


def _check_unique_users(users: list[UserSpec], where: str) -> None:
    seen: set[str] = set()
    for u in users:
        # IAM user names are unique case-insensitively.
        _expect(u.name.lower() not in seen, f"{where}: duplicate user name {u.name!r}")
        seen.add(u.name.lower())


def _parse_population(raw: dict, as_of: datetime, scope: str, where: str) -> list[UserSpec]:
    """The "users" and "bulk" of the scenario or of one account."""
    users_raw = raw.get("users", [])
    _expect(isinstance(users_raw, list), f"{where}.users: expected a list")
    users = [_parse_user(u, as_of, f"users[{i}]", scope) for i, u in enumerate(users_raw)]
    if raw.get("bulk") is not None:
        users.extend(_parse_bulk(raw["bulk"], as_of, f"{where}.bulk"))
    _check_unique_users(users, where)
    return users


CLOUDTRAIL_FIELDS = {"enabled", "events"}
CLOUDTRAIL_ANCHORS = ("now", "as_of")


def _parse_cloudtrail_event(raw: Any, users: dict[str, UserSpec], where: str) -> tuple[str, int, cloudtrail.SeriesSpec]:
    """One seeded series: whose key ("user", "key" oldest first), and the calls."""
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    try:
        series = cloudtrail.parse_series(raw, where, frozenset({"user", "key"}))
    except cloudtrail.SpecError as e:
        raise InputError(str(e)) from None
    name = raw.get("user")
    _expect(isinstance(name, str) and name in users, f"{where}.user: no user {name!r} in this account")
    key = raw.get("key", 0)
    n_keys = len(users[name].keys)
    _expect(_is_int(key) and 0 <= key < n_keys,
            f"{where}.key: an index of user {name!r}'s keys, oldest first, required "
            f"(the user has {n_keys} key(s)), got {key!r}")
    return name, key, series


def _parse_cloudtrail(raw: Any, users: list[UserSpec], where: str, top_level: bool) -> tuple[CloudTrailSpec, str]:
    """A "cloudtrail" object -> the account's spec, and the anchor (top level only)."""
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    _check_keys(raw, CLOUDTRAIL_FIELDS | ({"anchor"} if top_level else set()), where)
    enabled = raw.get("enabled", True)
    _expect(isinstance(enabled, bool), f"{where}.enabled: true or false required")
    anchor = raw.get("anchor", "now")
    _expect(anchor in CLOUDTRAIL_ANCHORS, f"{where}.anchor: 'now' or 'as_of' required, got {anchor!r}")
    events_raw = raw.get("events", [])
    _expect(isinstance(events_raw, list), f"{where}.events: expected a list")
    by_name = {u.name: u for u in users}
    events = [_parse_cloudtrail_event(e, by_name, f"{where}.events[{i}]") for i, e in enumerate(events_raw)]
    return CloudTrailSpec(enabled, events), anchor


def _check_cloudtrail_total(specs: list[CloudTrailSpec]) -> None:
    total = sum(series.count for spec in specs for _u, _k, series in spec.events)
    _expect(total <= cloudtrail.MAX_EVENTS,
            f"scenario: {total} seeded CloudTrail events; the harness keeps at most {cloudtrail.MAX_EVENTS}")


def _parse_organization(raw: Any) -> OrganizationSpec:
    where = "scenario.organization"
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    _check_keys(raw, {"role_name", "id"}, where)
    role_name = raw.get("role_name", DEFAULT_ROLE_NAME)
    org_id = raw.get("id", DEFAULT_ORG_ID)
    _expect(isinstance(role_name, str) and bool(ROLE_NAME_RE.match(role_name)),
            f"{where}.role_name: 1-64 chars of letters, digits and _+=,.@- required, got {role_name!r}")
    _expect(isinstance(org_id, str) and bool(ORG_ID_RE.match(org_id)),
            f"{where}.id: 'o-' and 10-32 lowercase letters or digits required, got {org_id!r}")
    return OrganizationSpec(org_id, role_name)


def _parse_role(raw: dict, role_name: str, where: str) -> tuple[str | None, str | None]:
    """An account's "role" and "external_id" -> (role name or None, external id or None)."""
    role = raw.get("role", True)
    _expect(isinstance(role, bool) or (isinstance(role, str) and bool(ROLE_NAME_RE.match(role))),
            f"{where}.role: true, false or a role name (1-64 chars of letters, digits and _+=,.@-) required")
    name = role_name if role is True else (role or None)
    external_id = raw.get("external_id")
    if external_id is not None:
        _expect(isinstance(external_id, str) and bool(organizations.EXTERNAL_ID_RE.match(external_id)),
                f"{where}.external_id: 2-1224 chars of letters, digits and _+=,.@:/- required")
        _expect(name is not None, f"{where}.external_id: an account without a role has no external id")
    return name, external_id


ACCOUNT_FIELDS = {"id", "name", "email", "status", "role", "external_id", "users", "bulk", "cloudtrail", "ou"}


def _parse_account(raw: Any, as_of: datetime, role_name: str, where: str) -> AccountSpec:
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    _check_keys(raw, ACCOUNT_FIELDS, where)
    account_id = raw.get("id")
    _expect(isinstance(account_id, str) and bool(ACCOUNT_ID_RE.match(account_id)),
            f"{where}.id: a 12-digit account id string required, got {account_id!r}")
    where = f"{where} ({account_id})"
    name = raw.get("name", f"account-{account_id}")
    _expect(isinstance(name, str) and bool(ACCOUNT_NAME_RE.match(name)),
            f"{where}.name: 1-50 printable ASCII characters required, got {name!r}")
    email = raw.get("email", f"aws+{account_id}@example.com")
    _expect(isinstance(email, str) and len(email) <= 64 and bool(EMAIL_RE.match(email)),
            f"{where}.email: an email address of at most 64 characters required, got {email!r}")
    status = raw.get("status", "ACTIVE")
    _expect(status in ACCOUNT_STATUSES, f"{where}.status: ACTIVE or SUSPENDED required, got {status!r}")
    role, external_id = _parse_role(raw, role_name, where)
    users = _parse_population(raw, as_of, f"{where} ", where)
    trail = (_parse_cloudtrail(raw["cloudtrail"], users, f"{where}.cloudtrail", False)[0]
             if "cloudtrail" in raw else CloudTrailSpec())
    ou = raw.get("ou", [])
    ous = [ou] if isinstance(ou, str) else ou
    _expect(isinstance(ous, list) and len(ous) <= 5 and all(isinstance(o, str) and OU_ID_RE.match(o) for o in ous),
            f"{where}.ou: an OU id (ou-abcd-12345678) or a list of at most 5, outermost first")
    return AccountSpec(account_id, name, email, status, role, external_id, users, trail, ous)


ACCOUNTS_BULK_FIELDS = {"count", "first_id", "users", "seed", "prefix", "name_prefix"}


def _parse_accounts_bulk(raw: Any, as_of: datetime, role_name: str) -> list[AccountSpec]:
    """"accounts_bulk" -> `count` ACTIVE accounts with ids first_id, first_id+1, ...;
    account i gets the bulk users of seed + i."""
    where = "scenario.accounts_bulk"
    _expect(isinstance(raw, dict), f"{where}: expected an object")
    _check_keys(raw, ACCOUNTS_BULK_FIELDS, where)
    count, first, n = raw.get("count"), raw.get("first_id"), raw.get("users", 0)
    seed, prefix = raw.get("seed", 7), raw.get("prefix", "bulk-")
    name_prefix = raw.get("name_prefix", "bulk-account-")
    _expect(_is_int(count) and 1 <= count <= MAX_ACCOUNTS, f"{where}.count: integer 1..{MAX_ACCOUNTS} required")
    if isinstance(first, str) and ACCOUNT_ID_RE.match(first):
        first = int(first)
    _expect(_is_int(first) and 0 <= first and first + count - 1 <= 999_999_999_999,
            f"{where}.first_id: an account id (integer or 12-digit string) required, "
            "and first_id + count - 1 must have at most 12 digits")
    _expect(_is_int(n) and 0 <= n <= 100000, f"{where}.users: integer 0..100000 required")
    _expect(count * n <= MAX_BULK_ACCOUNT_USERS, f"{where}: count * users must be at most {MAX_BULK_ACCOUNT_USERS}")
    _expect(_is_int(seed), f"{where}.seed: integer required")
    _expect(isinstance(prefix, str) and re.match(r"^[A-Za-z0-9+=,.@_-]{0,40}$", prefix) is not None,
            f"{where}.prefix: up to 40 chars of letters, digits and +=,.@_-")
    _expect(isinstance(name_prefix, str) and re.match(r"^[\x20-\x7e]{0,45}$", name_prefix) is not None,
            f"{where}.name_prefix: up to 45 printable ASCII characters")
    accounts = []
    for i in range(count):
        account_id = f"{first + i:012d}"
        accounts.append(AccountSpec(account_id, f"{name_prefix}{i:03d}", f"aws+{account_id}@example.com",
                                    "ACTIVE", role_name, None, generate_bulk(n, seed + i, prefix, as_of)))
    return accounts


def _parse_accounts(raw: dict, as_of: datetime, role_name: str) -> list[AccountSpec]:
    """The scenario's "accounts" and "accounts_bulk": unique ids, none the default account."""
    accounts_raw = raw.get("accounts", [])
    _expect(isinstance(accounts_raw, list), "scenario.accounts: expected a list")
    accounts = [_parse_account(a, as_of, role_name, f"accounts[{i}]") for i, a in enumerate(accounts_raw)]
    if raw.get("accounts_bulk") is not None:
        accounts.extend(_parse_accounts_bulk(raw["accounts_bulk"], as_of, role_name))
    _expect(len(accounts) <= MAX_ACCOUNTS, f"scenario: at most {MAX_ACCOUNTS} accounts")
    seen = {DEFAULT_ACCOUNT_ID}
    for a in accounts:
        _expect(a.id != DEFAULT_ACCOUNT_ID,
                f"scenario: account {a.id} is the default (management) account; its users go in scenario.users")
        _expect(a.id not in seen, f"scenario: duplicate account id {a.id}")
        seen.add(a.id)
    return accounts


SCENARIO_FIELDS = {"as_of", "users", "bulk", "description", "securityhub", "sns_topics",
                   "organization", "accounts", "accounts_bulk", "cloudtrail"}


def load_scenario(path: str | None, as_of_override: str | None) -> tuple[datetime, list[UserSpec]]:
    scenario = load_scenario_file(path, as_of_override)
    return scenario.as_of, scenario.users


def read_scenario_json(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise InputError(f"cannot read scenario: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"scenario is not valid JSON: {e}") from None
    _expect(isinstance(raw, dict), "scenario: top level must be a JSON object")
    _check_keys(raw, SCENARIO_FIELDS, "scenario")
    return raw


def load_scenario_file(path: str | None, as_of_override: str | None) -> Scenario:
    raw = read_scenario_json(path)
    if as_of_override is not None:
        as_of = parse_rfc3339(as_of_override, "--as-of")
    elif "as_of" in raw:
        as_of = parse_rfc3339(raw["as_of"], "scenario.as_of")
    else:
        as_of = utc_now_whole()

    users = _parse_population(raw, as_of, "", "scenario")
    enabled = _parse_securityhub(raw["securityhub"]) if "securityhub" in raw else True
    topics = _parse_sns_topics(raw["sns_topics"]) if "sns_topics" in raw else []
    organization = _parse_organization(raw["organization"]) if "organization" in raw else None
    role_name = organization.role_name if organization else DEFAULT_ROLE_NAME
    accounts = _parse_accounts(raw, as_of, role_name)
    trail, anchor = (_parse_cloudtrail(raw["cloudtrail"], users, "scenario.cloudtrail", True)
                     if "cloudtrail" in raw else (CloudTrailSpec(), "now"))
    _check_cloudtrail_total([trail, *(a.cloudtrail for a in accounts)])
    return Scenario(as_of, users, enabled, topics, organization, accounts, trail, anchor)

