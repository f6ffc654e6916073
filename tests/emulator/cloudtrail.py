"""CloudTrail event history for the emulator harness: a bounded record of the
AWS requests the harness serves, seeded history, and LookupEvents over them.

moto has no LookupEvents. The harness records every AWS request it serves
(``CloudTrail.record``), seeds history from the scenario and the control
endpoint (``CloudTrail.add_events``), and answers LookupEvents itself
(``CloudTrail.lookup_events``); other CloudTrail calls go to moto.

This module knows nothing about moto or WSGI, like ``securityhub.py``:
``ext_cloudtrail.py`` tells it which account a request acts in and who its access
key belongs to (an ``Identity``), and turns a ``CtError`` into a
protocol-correct AWS error. Times are epoch seconds (integers). See
README.md ("CloudTrail") for the behaviour.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import paging  # beside this file: page tokens and rate windows

RETENTION_SECONDS = 90 * 86400  # event history keeps 90 days
MAX_EVENTS = 100_000  # recorded and seeded events kept, oldest dropped
MAX_RESULTS = 50  # LookupEvents' limit and default
MAX_ATTRIBUTE_VALUE = 2000
DEFAULT_RATE_LIMIT = 2  # LookupEvents requests per account and region ...
DEFAULT_RATE_WINDOW = 1.0  # ... in this many seconds
MAX_SERIES = 100_000  # events in one seeded series
EVENT_VERSION = "1.09"
GLOBAL_REGION = "us-east-1"
# Global services: CloudTrail records their events in us-east-1, whatever the
# region of the request.
GLOBAL_SERVICES = frozenset({"iam", "sts", "organizations"})
EVENT_SOURCES = {"email": "ses.amazonaws.com", "monitoring": "monitoring.amazonaws.com"}
TOKEN_PREFIX = "rekey-cloudtrail:"
LOOKUP_MEMBERS = frozenset({"LookupAttributes", "StartTime", "EndTime", "EventCategory", "MaxResults", "NextToken"})
LOOKUP_KEYS = ("AccessKeyId", "EventId", "EventName", "EventSource", "ReadOnly", "Username",
               "ResourceType", "ResourceName")
UNIMPLEMENTED_KEYS = frozenset({"ResourceType", "ResourceName"})  # resources are shown, never looked up by
READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Head", "Lookup", "Search", "BatchGet", "Query", "Scan")

# Data events are not in CloudTrail's event history: recorded, never looked up.
DATA_EVENTS: dict[str, frozenset[str]] = {
    "s3": frozenset("""
        GetObject PutObject DeleteObject DeleteObjects HeadObject CopyObject RestoreObject SelectObjectContent
        GetObjectAcl PutObjectAcl GetObjectTagging PutObjectTagging DeleteObjectTagging GetObjectAttributes
        GetObjectRetention PutObjectRetention GetObjectLegalHold PutObjectLegalHold GetObjectTorrent
        CreateMultipartUpload UploadPart UploadPartCopy CompleteMultipartUpload AbortMultipartUpload ListParts
        ListObjects ListObjectsV2 ListObjectVersions ListMultipartUploads
    """.split()),
    "dynamodb": frozenset("""
        GetItem PutItem UpdateItem DeleteItem BatchGetItem BatchWriteItem Query Scan
        TransactGetItems TransactWriteItems ExecuteStatement BatchExecuteStatement ExecuteTransaction
    """.split()),
    "sns": frozenset({"Publish", "PublishBatch"}),
    "lambda": frozenset({"Invoke"}),
}

SERVICE_RE = re.compile(r"^[a-z0-9-]{1,64}$")
EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
SERVICE_HOST_RE = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)*\.amazonaws\.com$")
DURATION_RE = re.compile(r"^(?:\d+[dhms])+$")
DURATION_PART_RE = re.compile(r"(\d+)([dhms])")
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DEFAULT_SOURCE_IP = "192.0.2.10"
DEFAULT_USER_AGENT = "aws-cli/2.15.0 Python/3.11.6 Linux/5.10 exe/x86_64 prompt/off"
MAX_USER_AGENT = 1000
MAX_RESOURCES = 20  # resources named by one seeded event
RESOURCE_TYPE_RE = re.compile(r"^AWS::[A-Za-z0-9]+::[A-Za-z0-9]+$")
ERROR_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.:]{0,127}$")
VPC_ENDPOINT_RE = re.compile(r"^vpce-[0-9a-f]{1,32}$")


class CtError(Exception):
    """A CloudTrail API error: (status, code, message) on the wire."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ControlError(Exception):
    """A bad request to a /_rekey/cloudtrail control endpoint."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SpecError(Exception):
    """A bad event series, in the scenario or in a control request."""


def invalid_parameter(message: str) -> CtError:
    return CtError("InvalidParameterException", message)


def invalid_attributes(message: str) -> CtError:
    return CtError("InvalidLookupAttributesException", message)


def access_denied(caller_arn: str) -> CtError:
    return CtError("AccessDeniedException",
                   f"User: {caller_arn} is not authorized to perform: cloudtrail:LookupEvents because no "
                   "identity-based policy allows the cloudtrail:LookupEvents action")


# --------------------------------------------------------------------------
# Who made a request, and what an event is
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The userIdentity of an access key, resolved when the key is first seen.

    `username` is LookupEvents' Username: the user name of an IAM user, the
    session name of an assumed role."""

    type: str  # IAMUser | AssumedRole | Unknown
    account_id: str
    principal_id: str | None = None
    arn: str | None = None
    user_name: str | None = None  # userIdentity.userName (IAM users)
    username: str | None = None
    issuer: dict | None = None  # sessionContext.sessionIssuer (assumed roles)

    def doc(self, access_key_id: str | None) -> dict:
        out: dict[str, Any] = {"type": self.type}
        if self.principal_id is not None:
            out["principalId"] = self.principal_id
        if self.arn is not None:
            out["arn"] = self.arn
        out["accountId"] = self.account_id
        if access_key_id:
            out["accessKeyId"] = access_key_id
        if self.user_name is not None:
            out["userName"] = self.user_name
        if self.issuer is not None:
            out["sessionContext"] = {"sessionIssuer": dict(self.issuer),
                                     "attributes": {"mfaAuthenticated": "false"}}
        return out


def unknown_identity(account: str) -> Identity:
    return Identity("Unknown", account)


def event_region(service: str, region: str | None) -> str:
    """Where CloudTrail records a call: us-east-1 for global services."""
    if service in GLOBAL_SERVICES or not region:
        return GLOBAL_REGION
    return region


def event_source(service: str) -> str:
    return EVENT_SOURCES.get(service, f"{service}.amazonaws.com")


def is_read_only(name: str) -> bool:
    if " " in name:  # a REST call the harness names "METHOD /path"
        return name.split(" ", 1)[0] in ("GET", "HEAD")
    return name.startswith(READ_ONLY_PREFIXES)


def is_management(service: str, name: str) -> bool:
    data = DATA_EVENTS.get(service)
    return data is None or name not in data


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Resource:
    """A resource an event names: LookupEvents lists its type and name
    (`Resources`), the event's record its ARN (`resources[].ARN`) when it
    has one. A bucket's name is its name; a key's is its ARN."""

    type: str
    name: str
    arn: str | None = None


@dataclass(frozen=True)
class Extras:
    """What seeded events may carry beyond a recorded request, shared by
    every event of a series: the resources, an error code (the call was
    refused) and the VPC endpoint it came through."""

    resources: tuple[Resource, ...] = ()
    error_code: str | None = None
    vpc_endpoint_id: str | None = None


class Event:
    """One recorded or seeded call. Small (slots), immutable but for its ids,
    which are made when first shown."""

    __slots__ = ("seq", "time", "account", "region", "service", "name", "access_key_id", "identity",
                 "source_ip", "user_agent", "status", "origin", "parameters", "extras", "_ids")

    def __init__(self, seq: int, t: int, account: str, region: str, service: str, name: str,
                 access_key_id: str | None, identity: Identity, source_ip: str, user_agent: str,
                 status: int | None, origin: str, parameters: dict | None = None, extras: Extras | None = None):
        self.seq = seq
        self.time = t
        self.account = account
        self.region = region
        self.service = service
        self.name = name
        self.access_key_id = access_key_id
        self.identity = identity
        self.source_ip = source_ip
        self.user_agent = user_agent
        self.status = status  # HTTP status; None for seeded events (they succeeded)
        self.origin = origin  # request | scenario | control
        self.parameters = parameters  # requestParameters, for the calls the harness records them of
        self.extras = extras  # seeded resources, error code and VPC endpoint, if any
        self._ids: tuple[str, str] | None = None  # (eventID, requestID)

    @property
    def ids(self) -> tuple[str, str]:
        if self._ids is None:
            self._ids = (str(uuid.uuid4()), str(uuid.uuid4()))
        return self._ids

    @property
    def success(self) -> bool:
        if self.extras is not None and self.extras.error_code is not None:
            return False
        return self.status is None or self.status < 400

    @property
    def order(self) -> tuple[int, int]:
        """Newest first is descending order: time, then recording order."""
        return self.time, self.seq

    def cloudtrail_document(self) -> dict:
        event_id, request_id = self.ids
        read_only = is_read_only(self.name)
        doc = {
            "eventVersion": EVENT_VERSION,
            "userIdentity": self.identity.doc(self.access_key_id),
            "eventTime": iso(self.time),
            "eventSource": event_source(self.service),
            "eventName": self.name,
            "awsRegion": self.region,
            "sourceIPAddress": self.source_ip,
            "userAgent": self.user_agent,
            "requestParameters": self.parameters,
            "responseElements": None,
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": is_management(self.service, self.name),
            "recipientAccountId": self.account,
            "eventCategory": "Management" if is_management(self.service, self.name) else "Data",
        }
        extras = self.extras
        if extras is not None:
            if extras.error_code is not None:
                doc["errorCode"] = extras.error_code
                doc["errorMessage"] = f"harness: seeded {extras.error_code}"
            arns = [{"accountId": self.account, "type": r.type, "ARN": r.arn} for r in extras.resources if r.arn]
            if arns:
                doc["resources"] = arns
            if extras.vpc_endpoint_id is not None:
                doc["vpcEndpointId"] = extras.vpc_endpoint_id
        return doc

    def lookup_doc(self) -> dict:
        """The event as LookupEvents returns it."""
        out: dict[str, Any] = {
            "EventId": self.ids[0],
            "EventName": self.name,
            "ReadOnly": "true" if is_read_only(self.name) else "false",
        }
        if self.access_key_id:
            out["AccessKeyId"] = self.access_key_id
        out["EventTime"] = self.time
        out["EventSource"] = event_source(self.service)
        if self.identity.username is not None:
            out["Username"] = self.identity.username
        resources = self.extras.resources if self.extras is not None else ()
        out["Resources"] = [{"ResourceType": r.type, "ResourceName": r.name} for r in resources]
        out["CloudTrailEvent"] = json.dumps(self.cloudtrail_document())
        return out

    def view(self) -> dict:
        """The event as GET /_rekey/cloudtrail/events shows it."""
        return {
            "event_id": self.ids[0],
            "event_time": iso(self.time),
            "account": self.account,
            "region": self.region,
            "event_source": event_source(self.service),
            "event_name": self.name,
            "access_key_id": self.access_key_id,
            "user_identity_type": self.identity.type,
            "username": self.identity.username,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "status": self.status,
            "success": self.success,
            "read_only": is_read_only(self.name),
            "management": is_management(self.service, self.name),
            "origin": self.origin,
        }


# --------------------------------------------------------------------------
# Event series (scenario "cloudtrail.events" and POST /_rekey/cloudtrail/events)
# --------------------------------------------------------------------------


@dataclass
class SeriesSpec:
    """`count` calls, the newest `ago` seconds before the anchor, then one every `every` seconds back."""

    service: str
    event_name: str
    region: str
    source_ip: str
    user_agent: str
    ago: int
    count: int = 1
    every: int = 0
    extras: Extras | None = None

    def times(self, anchor: int) -> list[int]:
        return [anchor - self.ago - i * self.every for i in range(self.count)]


SERIES_FIELDS = frozenset({"ago", "source_ip", "user_agent", "service", "event_name", "region", "count", "every",
                           "resources", "error_code", "vpc_endpoint_id"})
RESOURCE_FIELDS = frozenset({"type", "name", "arn"})


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def parse_duration(value: Any, what: str) -> int:
    """'3d', '1h30m', '0s' -> seconds (the scenario's duration format)."""
    _expect(isinstance(value, str) and bool(DURATION_RE.match(value)),
            f"{what}: expected a duration like '3d', '1h30m' or '0s', got {value!r}")
    return sum(int(n) * UNIT_SECONDS[u] for n, u in DURATION_PART_RE.findall(value))


def valid_source_ip(value: Any) -> bool:
    """An IPv4/IPv6 address, or an AWS service host name as CloudTrail writes
    for calls that services make (for example cloudformation.amazonaws.com)."""
    if not isinstance(value, str) or len(value) > 253:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(SERVICE_HOST_RE.match(value))


def parse_series(raw: dict, where: str, extra: frozenset[str]) -> SeriesSpec:
    """One event series; `extra` names the fields that say whose key it is
    (user and key in a scenario, access_key_id in a control request), which
    the caller reads itself."""
    unknown = sorted(set(raw) - SERIES_FIELDS - extra)
    _expect(not unknown, f"{where}: unknown field(s) {', '.join(unknown)}")
    for name in ("service", "event_name", "ago"):
        _expect(name in raw, f"{where}.{name}: required")
    service, name = raw["service"], raw["event_name"]
    _expect(isinstance(service, str) and bool(SERVICE_RE.match(service)),
            f"{where}.service: a service name like 's3' or 'iam' (lowercase letters, digits, -) required, got {service!r}")
    _expect(isinstance(name, str) and bool(EVENT_NAME_RE.match(name)),
            f"{where}.event_name: an API operation name like 'ListBuckets' required, got {name!r}")
    region = raw.get("region", GLOBAL_REGION)
    _expect(isinstance(region, str) and bool(REGION_RE.match(region)),
            f"{where}.region: a region like 'us-east-1' required, got {region!r}")
    _expect(service not in GLOBAL_SERVICES or region == GLOBAL_REGION,
            f"{where}.region: CloudTrail records {service} events in {GLOBAL_REGION}, not {region}")
    source_ip = raw.get("source_ip", DEFAULT_SOURCE_IP)
    _expect(valid_source_ip(source_ip),
            f"{where}.source_ip: an IP address or an AWS service host name required, got {source_ip!r}")
    agent = raw.get("user_agent", DEFAULT_USER_AGENT)
    _expect(isinstance(agent, str) and 1 <= len(agent) <= MAX_USER_AGENT and agent.isprintable(),
            f"{where}.user_agent: 1-{MAX_USER_AGENT} printable characters required")
    ago = parse_duration(raw["ago"], f"{where}.ago")
    count = raw.get("count", 1)
    _expect(isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_SERIES,
            f"{where}.count: integer 1..{MAX_SERIES} required")
    _expect(count == 1 or "every" in raw, f"{where}.every: required when count is more than 1")
    every = parse_duration(raw["every"], f"{where}.every") if "every" in raw else 0
    _expect(count == 1 or every > 0, f"{where}.every: must be more than 0s")
    oldest = ago + (count - 1) * every
    _expect(oldest <= RETENTION_SECONDS,
            f"{where}: the oldest event would be {oldest // 86400}d{oldest % 86400 // 3600}h ago; "
            "CloudTrail event history keeps 90 days")
    extras = parse_extras(raw, where)
    return SeriesSpec(service, name, region, source_ip, agent, ago, count, every, extras)


def _printable(value: Any, most: int) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= most and value.isprintable()


def parse_extras(raw: dict, where: str) -> Extras | None:
    """A series' "resources" ([{"type", "name", "arn"?}]), "error_code" and
    "vpc_endpoint_id"; None when it has none of them."""
    if not {"resources", "error_code", "vpc_endpoint_id"} & set(raw):
        return None
    items = raw.get("resources", [])
    _expect(isinstance(items, list) and len(items) <= MAX_RESOURCES,
            f"{where}.resources: a list of at most {MAX_RESOURCES} resources required")
    resources = []
    for i, item in enumerate(items):
        at = f"{where}.resources[{i}]"
        _expect(isinstance(item, dict), f"{at}: expected an object")
        unknown = sorted(set(item) - RESOURCE_FIELDS)
        _expect(not unknown, f"{at}: unknown field(s) {', '.join(unknown)}")
        kind, name, arn = item.get("type"), item.get("name"), item.get("arn")
        _expect(isinstance(kind, str) and bool(RESOURCE_TYPE_RE.match(kind)),
                f"{at}.type: a resource type like 'AWS::S3::Bucket' required, got {kind!r}")
        _expect(_printable(name, 2000), f"{at}.name: 1-2000 printable characters required")
        _expect(arn is None or (_printable(arn, 2048) and arn.startswith("arn:")),
                f"{at}.arn: an ARN (arn:...) required, got {arn!r}")
        resources.append(Resource(kind, name, arn))
    code = raw.get("error_code")
    _expect(code is None or (isinstance(code, str) and bool(ERROR_CODE_RE.match(code))),
            f"{where}.error_code: an error code like 'AccessDenied' required, got {code!r}")
    endpoint = raw.get("vpc_endpoint_id")
    _expect(endpoint is None or (isinstance(endpoint, str) and bool(VPC_ENDPOINT_RE.match(endpoint))),
            f"{where}.vpc_endpoint_id: an id like 'vpce-0a1b2c3d' required, got {endpoint!r}")
    return Extras(tuple(resources), code, endpoint)


# --------------------------------------------------------------------------
# LookupEvents requests
# --------------------------------------------------------------------------


@dataclass
class Lookup:
    attribute: tuple[str, str] | None
    start: float | None
    end: float | None
    category: str | None
    max_results: int
    token: str | None

    def digest(self, account: str, region: str) -> str:
        """What a NextToken is bound to: the same parameters, account and region."""
        canon = json.dumps([account, region, self.attribute, self.start, self.end, self.category])
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _epoch(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_parameter(f"harness: {name} must be a timestamp in epoch seconds, got {value!r}")
    return float(value)


def parse_attributes(raw: Any) -> tuple[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise invalid_attributes("LookupAttributes must be a list.")
    if len(raw) > 1:
        raise invalid_attributes("You can specify at most one lookup attribute.")
    if not raw:
        return None
    attr = raw[0]
    if not isinstance(attr, dict) or set(attr) != {"AttributeKey", "AttributeValue"}:
        raise invalid_attributes("A lookup attribute needs exactly AttributeKey and AttributeValue.")
    key, value = attr["AttributeKey"], attr["AttributeValue"]
    if key not in LOOKUP_KEYS:
        raise invalid_attributes(f"Invalid AttributeKey {key!r}; valid keys are {', '.join(LOOKUP_KEYS)}.")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ATTRIBUTE_VALUE:
        raise invalid_attributes(f"The AttributeValue of {key} must be 1 to {MAX_ATTRIBUTE_VALUE} characters.")
    if key in UNIMPLEMENTED_KEYS:
        raise invalid_parameter(f"harness: lookup by {key} is not implemented (events show their resources, "
                                "but are not looked up by them)")
    if key == "ReadOnly" and value not in ("true", "false"):
        raise invalid_attributes("The AttributeValue of ReadOnly must be true or false.")
    return key, value


def parse_lookup(body: dict) -> Lookup:
    unknown = sorted(set(body) - LOOKUP_MEMBERS)
    if unknown:
        raise invalid_parameter(f"harness: unknown request member(s) {', '.join(unknown)}")
    attribute = parse_attributes(body.get("LookupAttributes"))
    start, end = _epoch(body.get("StartTime"), "StartTime"), _epoch(body.get("EndTime"), "EndTime")
    if start is not None and end is not None and start > end:
        raise CtError("InvalidTimeRangeException", "Start time must be before or equal to end time.")
    category = body.get("EventCategory")
    if category is not None and category != "insight":
        raise CtError("InvalidEventCategoryException", f"Invalid EventCategory {category!r}; the only value is insight.")
    max_results = body.get("MaxResults", MAX_RESULTS)
    if isinstance(max_results, bool) or not isinstance(max_results, int):
        raise invalid_parameter(f"harness: MaxResults must be an integer, got {max_results!r}")
    if not 1 <= max_results <= MAX_RESULTS:
        raise CtError("InvalidMaxResultsException",
                      f"Value {max_results} for MaxResults is invalid: it must be between 1 and {MAX_RESULTS}.")
    token = body.get("NextToken")
    if token is not None and not isinstance(token, str):
        raise CtError("InvalidNextTokenException", "Invalid NextToken.")
    return Lookup(attribute, start, end, category, max_results, token or None)


def encode_token(last: Event, digest: str) -> str:
    return paging.encode_cursor_token(TOKEN_PREFIX, last.time, last.seq, digest)


def decode_token(token: str, digest: str) -> tuple[int, int]:
    """The (time, seq) to continue below; InvalidNextTokenException for a token
    the harness did not hand out, or one handed out for other parameters."""
    try:
        t, seq, bound = paging.decode_cursor_token(TOKEN_PREFIX, token)
        cursor = (int(t), int(seq))
    except ValueError:
        raise CtError("InvalidNextTokenException", "Invalid NextToken.") from None
    if bound != digest:
        raise CtError("InvalidNextTokenException",
                      "The NextToken was issued for a request with different parameters.")
    return cursor


def attribute_matcher(attribute: tuple[str, str] | None) -> Callable[[Event], bool]:
    if attribute is None:
        return lambda e: True
    key, value = attribute
    if key == "AccessKeyId":
        return lambda e: e.access_key_id == value
    if key == "EventName":
        return lambda e: e.name == value
    if key == "EventSource":
        return lambda e: event_source(e.service) == value
    if key == "Username":
        return lambda e: e.identity.username == value
    if key == "EventId":
        return lambda e: e._ids is not None and e._ids[0] == value
    if key == "ReadOnly":
        return lambda e: is_read_only(e.name) == (value == "true")
    raise AssertionError(key)


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


@dataclass
class AccountTrail:
    enabled: bool = True  # False: LookupEvents answers AccessDeniedException
    lookup_requests: int = 0  # served: not denied, not throttled
    lookup_throttled: int = 0
    lookup_denied: int = 0
    windows: dict[str, deque] = field(default_factory=dict)  # region -> times of recent lookups


class CloudTrail:
    """The event history of every account; every method is thread-safe.

    `clock` gives epoch seconds (event times, the 90 days), `monotonic` the
    rate limiter's time; tests of this module pass fakes."""

    def __init__(self, max_events: int = MAX_EVENTS, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.lock = threading.Lock()
        self.events: deque[Event] = deque(maxlen=max_events)
        self.seq = 0
        self.dropped = 0
        self.accounts: dict[str, AccountTrail] = {}
        self.rate_limit_count = DEFAULT_RATE_LIMIT
        self.rate_window = DEFAULT_RATE_WINDOW
        self.clock = clock
        self.monotonic = monotonic

    def now(self) -> int:
        return int(self.clock())

    def account(self, account: str) -> AccountTrail:
        trail = self.accounts.get(account)
        if trail is None:
            trail = self.accounts[account] = AccountTrail()
        return trail

    # -- recording -------------------------------------------------------------

    def record(self, account: str, region: str | None, service: str, name: str, access_key_id: str | None,
               identity: Identity, source_ip: str, user_agent: str, status: int | None,
               parameters: dict | None = None) -> None:
        """One request the harness served, now (the hot path: keep it small)."""
        t = int(self.clock())
        region = event_region(service, region)
        with self.lock:
            self.seq += 1
            if len(self.events) == self.events.maxlen:
                self.dropped += 1
            self.events.append(Event(self.seq, t, account, region, service, name, access_key_id, identity,
                                     source_ip, user_agent, status, "request", parameters))

    def add_series(self, items: list[tuple[str, str, Identity, SeriesSpec]], anchor: int, origin: str) -> int:
        """Seeded history: (account, access key id, identity, series) items,
        inserted oldest first so that the bound drops the oldest. Returns how many."""
        rows = [(t, account, akid, identity, spec)
                for account, akid, identity, spec in items for t in spec.times(anchor)]
        rows.sort(key=lambda r: r[0])
        with self.lock:
            for t, account, akid, identity, spec in rows:
                self.seq += 1
                if len(self.events) == self.events.maxlen:
                    self.dropped += 1
                self.events.append(Event(self.seq, t, account, event_region(spec.service, spec.region),
                                         spec.service, spec.event_name, akid, identity, spec.source_ip,
                                         spec.user_agent, None, origin, None, spec.extras))
        return len(rows)

    # -- LookupEvents ----------------------------------------------------------

    def lookup_events(self, account: str, region: str, body: dict, caller_arn: Callable[[], str]) -> dict:
        with self.lock:
            trail = self.account(account)
            if not trail.enabled:
                trail.lookup_denied += 1
                raise access_denied(caller_arn())
            self._throttle(trail, region)
            trail.lookup_requests += 1
        query = parse_lookup(body)
        digest = query.digest(account, region)
        cursor = decode_token(query.token, digest) if query.token else None
        if query.category == "insight":  # the harness has no Insights events
            return {"Events": []}
        now = self.now()
        floor = now - RETENTION_SECONDS  # never older than 90 days, whatever StartTime says
        if query.start is not None:
            floor = max(floor, query.start)
        ceiling = query.end if query.end is not None else now
        matches = attribute_matcher(query.attribute)
        with self.lock:
            candidates = (e for e in self.events
                          if e.account == account and e.region == region and floor <= e.time <= ceiling
                          and (cursor is None or e.order < cursor) and is_management(e.service, e.name)
                          and matches(e))
            page = heapq.nlargest(query.max_results + 1, candidates, key=lambda e: e.order)
            docs = [e.lookup_doc() for e in page[:query.max_results]]
        out: dict[str, Any] = {"Events": docs}
        if len(page) > query.max_results:
            out["NextToken"] = encode_token(page[query.max_results - 1], digest)
        return out

    def _throttle(self, trail: AccountTrail, region: str) -> None:
        """At most rate_limit_count lookups in any rate_window seconds, per account and region."""
        times = trail.windows.setdefault(region, deque())
        if not paging.admit(times, self.monotonic(), self.rate_limit_count, self.rate_window):
            trail.lookup_throttled += 1
            raise CtError("ThrottlingException", "Rate exceeded")

    # -- control endpoints -----------------------------------------------------

    def set_enabled(self, account: str, enabled: bool) -> dict:
        with self.lock:
            self.account(account).enabled = enabled
        return {"account": account, "enabled": enabled}

    def enabled(self, account: str) -> dict:
        with self.lock:
            return {"account": account, "enabled": self.account(account).enabled}

    def events_view(self, access_key_id: str | None, account: str | None, limit: int) -> dict:
        """Every event (data events and failures too, all regions), newest first."""
        with self.lock:
            found = [e for e in self.events
                     if (access_key_id is None or e.access_key_id == access_key_id)
                     and (account is None or e.account == account)]
            found.sort(key=lambda e: e.order, reverse=True)
            return {"total": len(found), "events": [e.view() for e in found[:limit]]}

    def clear(self, account: str | None) -> dict:
        with self.lock:
            before = len(self.events)
            kept = [e for e in self.events if account is not None and e.account != account]
            self.events.clear()
            self.events.extend(kept)
            return {"cleared": before - len(kept)}

    def stats(self, account: str) -> dict:
        with self.lock:
            trail = self.account(account)
            return {
                "account": account,
                "enabled": trail.enabled,
                "lookup_events_requests": trail.lookup_requests,
                "lookup_events_throttled": trail.lookup_throttled,
                "lookup_events_denied": trail.lookup_denied,
                "events": sum(1 for e in self.events if e.account == account),
                "events_all_accounts": len(self.events),
                "max_events": self.events.maxlen,
                "dropped_events": self.dropped,
                "rate_limit": self._rate_limit(),
            }

    def reset_stats(self, account: str) -> dict:
        with self.lock:
            trail = self.account(account)
            trail.lookup_requests = trail.lookup_throttled = trail.lookup_denied = 0
            trail.windows.clear()
        return self.stats(account)

    def _rate_limit(self) -> dict:
        return {"limit": self.rate_limit_count, "window_seconds": self.rate_window}

    def rate_limit(self) -> dict:
        with self.lock:
            return self._rate_limit()

    def set_rate_limit(self, body: dict) -> dict:
        try:
            limit, window = paging.parse_rate_limit(body, self.rate_limit_count, self.rate_window)
        except ValueError as e:
            raise ControlError(400, str(e)) from None
        with self.lock:
            self.rate_limit_count, self.rate_window = limit, window
            for trail in self.accounts.values():
                trail.windows.clear()
            return self._rate_limit()
