"""Security Hub for the emulator harness: an IAM.3 finding store that the
harness serves itself (moto's securityhub backend never sees these calls).

This module knows nothing about moto or WSGI. ``ext_securityhub.py`` hands it
snapshots of IAM users (``UserSnapshot``) to evaluate, routes the REST calls
GetFindings, BatchUpdateFindings and BatchImportFindings here, and turns a
``HubError`` into a protocol-correct AWS error. See README.md ("Security
Hub") for the behaviour, the control endpoints and what is left out.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import paging  # beside this file: page tokens and rate windows

SCHEMA_VERSION = "2018-10-08"
DEFAULT_REGION = "us-east-1"
CONTROL_ID = "IAM.3"
GENERATOR_ID = "security-control/IAM.3"
TITLE = "IAM users' access keys should be rotated every 90 days or less"
DESCRIPTION = ("This AWS control checks whether the active access keys are rotated within 90 days. "
               "The control fails if an active access key of the IAM user is older than 90 days.")
FINDING_TYPES = ["Software and Configuration Checks/Industry and Regulatory Standards"]
STANDARDS_ID = "standards/aws-foundational-security-best-practices/v/1.0.0"
REMEDIATION_URL = "https://docs.aws.amazon.com/console/securityhub/IAM.3/remediation"

WORKFLOW_STATUSES = ("NEW", "NOTIFIED", "SUPPRESSED", "RESOLVED")
SEVERITY_LABELS = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
MAX_FILTER_VALUES = 20
MAX_FILTER_FIELDS = 10
NOTE_MAX = 512
TOKEN_PREFIX = "rekey-findings:"
DEFAULT_UNPROCESSED_CODE = "ConcurrentUpdateError"
DEFAULT_UNPROCESSED_MESSAGE = "Concurrent finding updates detected"
BATCH_UPDATE_FIELDS = ("Note", "Severity", "VerificationState", "Confidence", "Criticality",
                       "Types", "UserDefinedFields", "Workflow", "RelatedFindings")
ACCOUNT_RE = re.compile(r"^\d{12}$")


class HubError(Exception):
    """A Security Hub API error: (status, code, message) on the wire."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ControlError(Exception):
    """A bad request to a /_rekey/securityhub/ control endpoint."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def invalid_input(message: str) -> HubError:
    return HubError(400, "InvalidInputException", message)


def invalid_param(param: str, rule: str) -> HubError:
    """AWS's message style: Invalid parameter 'X'. data.X should ..."""
    return invalid_input(f"Invalid parameter '{param}'. data.{param} {rule}")


def not_subscribed(account: str) -> HubError:
    return HubError(401, "InvalidAccessException", f"Account {account} is not subscribed to AWS Security Hub")


def asff_time(dt: datetime) -> str:
    """Security Hub writes timestamps with milliseconds: 2026-11-28T12:00:00.000Z."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_asff_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp with Z or an offset, or None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "zZ" else value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


# --------------------------------------------------------------------------
# GetFindings filters
# --------------------------------------------------------------------------

STRING_COMPARISONS = ("EQUALS", "PREFIX", "NOT_EQUALS", "PREFIX_NOT_EQUALS", "CONTAINS", "NOT_CONTAINS")
MAP_COMPARISONS = ("EQUALS", "NOT_EQUALS", "CONTAINS", "NOT_CONTAINS")
POSITIVE = {"EQUALS", "PREFIX", "CONTAINS"}


def _get(doc: dict, *path: str) -> Any:
    for p in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


def _strs(*values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)]


def _resources(doc: dict) -> list[dict]:
    return [r for r in doc.get("Resources") or [] if isinstance(r, dict)]


STRING_FIELDS: dict[str, Callable[[dict], list[str]]] = {
    "Id": lambda d: _strs(d.get("Id")),
    "ProductArn": lambda d: _strs(d.get("ProductArn")),
    "ProductName": lambda d: _strs(d.get("ProductName")),
    "CompanyName": lambda d: _strs(d.get("CompanyName")),
    "GeneratorId": lambda d: _strs(d.get("GeneratorId")),
    "AwsAccountId": lambda d: _strs(d.get("AwsAccountId")),
    "Region": lambda d: _strs(d.get("Region")),
    "Type": lambda d: _strs(*(d.get("Types") or [])),
    "Title": lambda d: _strs(d.get("Title")),
    "Description": lambda d: _strs(d.get("Description")),
    "SeverityLabel": lambda d: _strs(_get(d, "Severity", "Label")),
    "ComplianceStatus": lambda d: _strs(_get(d, "Compliance", "Status")),
    "ComplianceSecurityControlId": lambda d: _strs(_get(d, "Compliance", "SecurityControlId")),
    "ComplianceAssociatedStandardsId": lambda d: _strs(
        *(s.get("StandardsId") for s in _get(d, "Compliance", "AssociatedStandards") or [] if isinstance(s, dict))),
    "RecordState": lambda d: _strs(d.get("RecordState")),
    "WorkflowStatus": lambda d: _strs(_get(d, "Workflow", "Status")),
    "WorkflowState": lambda d: _strs(d.get("WorkflowState")),
    "VerificationState": lambda d: _strs(d.get("VerificationState")),
    "NoteText": lambda d: _strs(_get(d, "Note", "Text")),
    "NoteUpdatedBy": lambda d: _strs(_get(d, "Note", "UpdatedBy")),
    "ResourceId": lambda d: _strs(*(r.get("Id") for r in _resources(d))),
    "ResourceType": lambda d: _strs(*(r.get("Type") for r in _resources(d))),
    "ResourcePartition": lambda d: _strs(*(r.get("Partition") for r in _resources(d))),
    "ResourceRegion": lambda d: _strs(*(r.get("Region") for r in _resources(d))),
    "ResourceAwsIamUserUserName": lambda d: _strs(
        *(_get(r, "Details", "AwsIamUser", "UserName") for r in _resources(d))),
}

MAP_FIELDS: dict[str, Callable[[dict], list[dict]]] = {
    "ProductFields": lambda d: [d.get("ProductFields") or {}],
    "UserDefinedFields": lambda d: [d.get("UserDefinedFields") or {}],
    "ResourceTags": lambda d: [r.get("Tags") or {} for r in _resources(d)],
}

# Every filter field GetFindings accepts (AwsSecurityFindingFilters in the
# 2018-10-26 API model). A field here but not above is valid in AWS but not
# implemented by the harness: it is refused rather than silently ignored.
AWS_FILTER_FIELDS = frozenset("""
ProductArn AwsAccountId Id GeneratorId Region Type SeverityLabel Title Description RecommendationText
SourceUrl ProductName CompanyName MalwareName MalwareType MalwarePath MalwareState NetworkDirection
NetworkProtocol NetworkSourceDomain NetworkSourceMac NetworkDestinationDomain ProcessName ProcessPath
ThreatIntelIndicatorType ThreatIntelIndicatorValue ThreatIntelIndicatorCategory ThreatIntelIndicatorSource
ThreatIntelIndicatorSourceUrl ResourceType ResourceId ResourcePartition ResourceRegion ResourceAwsEc2InstanceType
ResourceAwsEc2InstanceImageId ResourceAwsEc2InstanceKeyName ResourceAwsEc2InstanceIamInstanceProfileArn
ResourceAwsEc2InstanceVpcId ResourceAwsEc2InstanceSubnetId ResourceAwsS3BucketOwnerId ResourceAwsS3BucketOwnerName
ResourceAwsIamAccessKeyUserName ResourceAwsIamAccessKeyPrincipalName ResourceAwsIamAccessKeyStatus
ResourceAwsIamUserUserName ResourceContainerName ResourceContainerImageId ResourceContainerImageName
ComplianceStatus VerificationState WorkflowState WorkflowStatus RecordState RelatedFindingsProductArn
RelatedFindingsId NoteText NoteUpdatedBy FindingProviderFieldsRelatedFindingsId
FindingProviderFieldsRelatedFindingsProductArn FindingProviderFieldsSeverityLabel
FindingProviderFieldsSeverityOriginal FindingProviderFieldsTypes ComplianceSecurityControlId
ComplianceAssociatedStandardsId VulnerabilitiesExploitAvailable VulnerabilitiesFixAvailable
ComplianceSecurityControlParametersName ComplianceSecurityControlParametersValue AwsAccountName
ResourceApplicationName ResourceApplicationArn ResourceOwnerAccountId ResourceOwnerOrgId ResourceProvider
FirstObservedAt LastObservedAt CreatedAt UpdatedAt ProcessLaunchedAt ProcessTerminatedAt
ThreatIntelIndicatorLastObservedAt ResourceAwsEc2InstanceLaunchedAt ResourceAwsIamAccessKeyCreatedAt
ResourceContainerLaunchedAt NoteUpdatedAt SeverityProduct SeverityNormalized Confidence Criticality
NetworkSourcePort NetworkDestinationPort ProcessPid ProcessParentPid FindingProviderFieldsConfidence
FindingProviderFieldsCriticality ProductFields UserDefinedFields ResourceTags ResourceDetailsOther
NetworkSourceIpV4 NetworkSourceIpV6 NetworkDestinationIpV4 NetworkDestinationIpV6
ResourceAwsEc2InstanceIpV4Addresses ResourceAwsEc2InstanceIpV6Addresses Keyword Sample
""".split())


@dataclass
class FieldFilter:
    """The filters on one field: positives OR'd, negatives AND'd, both AND'd."""

    name: str
    values: Callable[[dict], list[str]]
    positives: list[tuple[str, str]]  # (comparison, value)
    negatives: list[tuple[str, str]]

    def matches(self, doc: dict) -> bool:
        got = self.values(doc)
        if self.positives and not any(_compare(c, v, x) for c, v in self.positives for x in got):
            return False
        # A negative comparison holds when no value of the field violates it.
        return all(_compare(c, v, x) for c, v in self.negatives for x in got)


def _compare(comparison: str, want: str, got: str) -> bool:
    if comparison == "EQUALS":
        return got == want
    if comparison == "PREFIX":
        return got.startswith(want)
    if comparison == "CONTAINS":
        return want in got
    if comparison == "NOT_EQUALS":
        return got != want
    if comparison == "PREFIX_NOT_EQUALS":
        return not got.startswith(want)
    if comparison == "NOT_CONTAINS":
        return want not in got
    raise AssertionError(comparison)


def _check_combination(name: str, comparisons: set[str]) -> None:
    """The combinations AWS documents as errors (StringFilter, MapFilter)."""
    for lone in ("CONTAINS", "NOT_CONTAINS"):
        if lone in comparisons and comparisons != {lone}:
            raise invalid_input(f"Invalid parameter 'Filters'. {name}: {lone} filters can only be used "
                                f"with other {lone} filters on the same field")
    if "EQUALS" in comparisons and comparisons & {"NOT_EQUALS", "PREFIX_NOT_EQUALS"}:
        raise invalid_input(f"Invalid parameter 'Filters'. {name}: EQUALS cannot be combined with "
                            "NOT_EQUALS or PREFIX_NOT_EQUALS on the same field")


def _parse_field(name: str, raw: Any) -> list[FieldFilter]:
    """One filter field -> FieldFilters (one per map key)."""
    if not isinstance(raw, list):
        raise invalid_param(f"Filters.{name}", "should be array")
    if len(raw) > MAX_FILTER_VALUES:
        raise invalid_param(f"Filters.{name}", f"should NOT have more than {MAX_FILTER_VALUES} items")
    is_map = name in MAP_FIELDS
    allowed = MAP_COMPARISONS if is_map else STRING_COMPARISONS
    by_key: dict[str | None, list[tuple[str, str]]] = {}
    for i, f in enumerate(raw):
        where = f"Filters.{name}[{i}]"
        members = {"Key", "Value", "Comparison"} if is_map else {"Value", "Comparison"}
        if not isinstance(f, dict) or set(f) - members:
            raise invalid_param(where, f"should be an object with {', '.join(sorted(members))}")
        if not _nonempty_str(f.get("Value")):
            raise invalid_param(f"{where}.Value", "should be a non-empty string")
        if f.get("Comparison") not in allowed:
            raise invalid_param(f"{where}.Comparison", f"should be equal to one of the allowed values: {', '.join(allowed)}")
        if is_map and not _nonempty_str(f.get("Key")):
            raise invalid_param(f"{where}.Key", "should be a non-empty string")
        by_key.setdefault(f.get("Key") if is_map else None, []).append((f["Comparison"], f["Value"]))
    out = []
    for key, comps in by_key.items():
        _check_combination(name, {c for c, _ in comps})
        values = STRING_FIELDS[name] if not is_map else _map_values(name, key)
        out.append(FieldFilter(name, values, [c for c in comps if c[0] in POSITIVE],
                               [c for c in comps if c[0] not in POSITIVE]))
    return out


def _map_values(name: str, key: str | None) -> Callable[[dict], list[str]]:
    maps = MAP_FIELDS[name]
    return lambda d: _strs(*(m.get(key) for m in maps(d) if isinstance(m, dict)))


def parse_filters(raw: Any) -> list[FieldFilter]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise invalid_param("Filters", "should be object")
    unknown = sorted(set(raw) - AWS_FILTER_FIELDS)
    if unknown:
        raise invalid_input(f"Invalid parameter 'Filters'. data.Filters should NOT have additional properties "
                            f"({', '.join(unknown)})")
    unsupported = sorted(n for n in raw if n not in STRING_FIELDS and n not in MAP_FIELDS)
    if unsupported:
        raise invalid_input(f"harness: filter field(s) {', '.join(unsupported)} are valid in AWS but not "
                            "implemented by the emulator")
    if len(raw) > MAX_FILTER_FIELDS:
        raise invalid_param("Filters", f"should NOT have more than {MAX_FILTER_FIELDS} properties")
    return [ff for name, value in raw.items() for ff in _parse_field(name, value)]


def encode_token(offset: int) -> str:
    return paging.encode_offset_token(TOKEN_PREFIX, offset)


def decode_token(token: Any) -> int:
    try:
        return paging.decode_offset_token(TOKEN_PREFIX, token)
    except ValueError:
        raise invalid_input("Invalid parameter 'NextToken'. The NextToken is not valid") from None


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


@dataclass
class UserSnapshot:
    """What IAM.3 looks at for one IAM user: (status, created) of each key."""

    name: str
    arn: str
    user_id: str
    path: str
    created: datetime
    keys: list[tuple[str, datetime]]


@dataclass
class Stored:
    doc: dict  # the finding as GetFindings returns it
    user_arn: str | None = None  # set for synthesised IAM.3 findings
    user_name: str | None = None
    note_history: list[dict] = field(default_factory=list)
    customer_updated: bool = False  # BatchUpdateFindings touched it


@dataclass
class Injection:
    remaining: int
    code: str
    message: str


@dataclass
class AccountHub:
    enabled: bool = True
    subscribed_at: datetime | None = None
    findings: dict[tuple[str, str], Stored] = field(default_factory=dict)  # (Id, ProductArn) -> finding
    by_user_arn: dict[str, tuple[str, str]] = field(default_factory=dict)
    unprocessed: dict[str, Injection] = field(default_factory=dict)  # user name -> injection
    import_times: deque = field(default_factory=deque)  # clock() of accepted imports
    get_findings_requests: int = 0
    batch_update_requests: int = 0
    batch_update_sizes: list[int] = field(default_factory=list)
    batch_import_requests: int = 0
    batch_import_throttled: int = 0


def product_arn(region: str) -> str:
    return f"arn:aws:securityhub:{region}::product/aws/securityhub"


def control_status(user: UserSnapshot, as_of: datetime, max_age: timedelta) -> str:
    """IAM.3: FAILED if an Active key is older than max_age (strictly)."""
    old = any(status == "Active" and as_of - created > max_age for status, created in user.keys)
    return "FAILED" if old else "PASSED"


def control_finding(account: str, region: str, finding_id: str, user: UserSnapshot,
                    status: str, now: datetime) -> dict:
    """A consolidated IAM.3 control finding, shaped like Security Hub's own."""
    stamp = asff_time(now)
    parn = product_arn(region)
    return {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id,
        "ProductArn": parn,
        "ProductName": "Security Hub",
        "CompanyName": "AWS",
        "Region": region,
        "GeneratorId": GENERATOR_ID,
        "AwsAccountId": account,
        "Types": list(FINDING_TYPES),
        "FirstObservedAt": stamp,
        "LastObservedAt": stamp,
        "CreatedAt": stamp,
        "UpdatedAt": stamp,
        "Severity": {"Label": "MEDIUM", "Normalized": 40, "Original": "MEDIUM"},
        "Title": TITLE,
        "Description": DESCRIPTION,
        "Remediation": {"Recommendation": {
            "Text": "For information on how to correct this issue, consult the AWS Security Hub controls documentation.",
            "Url": REMEDIATION_URL}},
        "ProductFields": {
            "RelatedAWSResources:0/name": "securityhub-access-keys-rotated-" + finding_id[-8:],
            "RelatedAWSResources:0/type": "AWS::Config::ConfigRule",
            "aws/securityhub/ProductName": "Security Hub",
            "aws/securityhub/CompanyName": "AWS",
            "Resources:0/Id": user.arn,
            "aws/securityhub/FindingId": f"{parn}/{finding_id}",
        },
        "Resources": [resource(user, region)],
        "Compliance": {"Status": status, "SecurityControlId": CONTROL_ID,
                       "AssociatedStandards": [{"StandardsId": STANDARDS_ID}]},
        "WorkflowState": "NEW",
        # Security Hub sets PASSED control findings to RESOLVED.
        "Workflow": {"Status": "NEW" if status == "FAILED" else "RESOLVED"},
        "RecordState": "ACTIVE",
        "FindingProviderFields": {"Severity": {"Label": "MEDIUM", "Original": "MEDIUM"},
                                  "Types": list(FINDING_TYPES)},
    }


def resource(user: UserSnapshot, region: str) -> dict:
    return {"Type": "AwsIamUser", "Id": user.arn, "Partition": "aws", "Region": region,
            "Details": {"AwsIamUser": {"UserName": user.name, "UserId": user.user_id, "Path": user.path,
                                       "CreateDate": asff_time(user.created)}}}


def next_workflow(workflow: str, old_status: str, new_status: str, was_archived: bool) -> str:
    """Security Hub's automatic workflow changes when a control is re-evaluated."""
    if workflow == "SUPPRESSED":
        return workflow
    if workflow in ("NOTIFIED", "RESOLVED") and (was_archived or (old_status == "PASSED" and new_status == "FAILED")):
        workflow = "NEW"
    if new_status == "PASSED" and workflow in ("NEW", "NOTIFIED"):
        workflow = "RESOLVED"
    return workflow


class SecurityHub:
    """Per-account finding stores; every method is thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.lock = threading.RLock()
        self.accounts: dict[str, AccountHub] = {}
        self.home_region = DEFAULT_REGION
        self.import_limit = 10
        self.import_window = 1.0  # seconds
        self.clock = clock

    def account(self, account: str) -> AccountHub:
        with self.lock:
            hub = self.accounts.get(account)
            if hub is None:
                hub = self.accounts[account] = AccountHub()
            return hub

    # -- enablement ----------------------------------------------------------

    def set_enabled(self, account: str, enabled: bool) -> None:
        with self.lock:
            self.account(account).enabled = enabled

    def require_enabled(self, account: str) -> AccountHub:
        hub = self.account(account)
        if not hub.enabled:
            raise not_subscribed(account)
        return hub

    def enable_hub(self, account: str, now: datetime) -> dict:
        """EnableSecurityHub."""
        with self.lock:
            hub = self.account(account)
            if hub.enabled:
                raise HubError(409, "ResourceConflictException",
                               f"Account {account} is already subscribed to Security Hub")
            hub.enabled, hub.subscribed_at = True, now
            return {}

    def disable_hub(self, account: str) -> dict:
        """DisableSecurityHub (findings are kept, as if re-enabled soon)."""
        with self.lock:
            self.require_enabled(account).enabled = False
            return {}

    def describe_hub(self, account: str, region: str, now: datetime) -> dict:
        with self.lock:
            hub = self.require_enabled(account)
            return {"HubArn": f"arn:aws:securityhub:{region}:{account}:hub/default",
                    "SubscribedAt": asff_time(hub.subscribed_at or now),
                    "AutoEnableControls": True, "ControlFindingGenerator": "SECURITY_CONTROL"}

    # -- evaluation (IAM.3) ----------------------------------------------------

    def evaluate(self, account: str, users: list[UserSnapshot], as_of: datetime,
                 max_age: timedelta, now: datetime) -> dict:
        """Re-evaluate IAM.3 for every user; archive findings of users gone."""
        region = self.home_region
        with self.lock:
            hub = self.account(account)
            seen = set()
            for user in users:
                seen.add(user.arn)
                self._evaluate_user(hub, account, region, user, control_status(user, as_of, max_age), now)
            for arn, key in hub.by_user_arn.items():
                stored = hub.findings.get(key)
                if arn not in seen and stored is not None and stored.doc["RecordState"] == "ACTIVE":
                    stored.doc["RecordState"] = "ARCHIVED"
                    stored.doc["UpdatedAt"] = asff_time(now)
            return self.summary(account, as_of)

    def _evaluate_user(self, hub: AccountHub, account: str, region: str, user: UserSnapshot,
                       status: str, now: datetime) -> None:
        key = hub.by_user_arn.get(user.arn)
        stored = hub.findings.get(key) if key else None
        if stored is None:
            finding_id = f"arn:aws:securityhub:{region}:{account}:security-control/{CONTROL_ID}/finding/{uuid.uuid4()}"
            doc = control_finding(account, region, finding_id, user, status, now)
            key = (doc["Id"], doc["ProductArn"])
            hub.findings[key] = Stored(doc, user.arn, user.name)
            hub.by_user_arn[user.arn] = key
            return
        doc = stored.doc
        was_archived = doc["RecordState"] == "ARCHIVED"
        doc["Workflow"]["Status"] = next_workflow(doc["Workflow"]["Status"], doc["Compliance"]["Status"],
                                                  status, was_archived)
        doc["Compliance"]["Status"] = status
        doc["RecordState"] = "ACTIVE"
        doc["Resources"] = [resource(user, region)]
        doc["UpdatedAt"] = doc["LastObservedAt"] = asff_time(now)
        stored.user_name = user.name

    def summary(self, account: str, as_of: datetime | None = None) -> dict:
        with self.lock:
            docs = [s.doc for s in self.account(account).findings.values()]
        active = [d for d in docs if d.get("RecordState") == "ACTIVE"]
        out: dict[str, Any] = {"account": account}
        if as_of is not None:
            out["as_of"] = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.update({
            "findings": len(docs),
            "active": len(active),
            "archived": len(docs) - len(active),
            "compliance": dict(sorted(Counter(_get(d, "Compliance", "Status") or "NONE" for d in active).items())),
            "workflow": dict(sorted(Counter(_get(d, "Workflow", "Status") or "NONE" for d in active).items())),
        })
        return out

    # -- GetFindings -----------------------------------------------------------

    def get_findings(self, account: str, region: str, body: dict) -> dict:
        with self.lock:
            self.require_enabled(account).get_findings_requests += 1
        _check_members(body, {"Filters", "SortCriteria", "NextToken", "MaxResults"})
        filters = parse_filters(body.get("Filters"))
        max_results = body.get("MaxResults", 100)
        if not isinstance(max_results, int) or isinstance(max_results, bool):
            raise invalid_param("MaxResults", "should be integer")
        if not 1 <= max_results <= 100:
            raise invalid_param("MaxResults", "should be >= 1" if max_results < 1 else "should be <= 100")
        offset = decode_token(body["NextToken"]) if body.get("NextToken") else 0
        sort = parse_sort(body.get("SortCriteria"))
        with self.lock:
            hub = self.require_enabled(account)
            docs = [s.doc for s in hub.findings.values()
                    if s.doc.get("Region") == region and all(f.matches(s.doc) for f in filters)]
            docs = sort_findings(docs, sort)
            page = copy.deepcopy(docs[offset:offset + max_results])
        out: dict[str, Any] = {"Findings": page}
        if offset + max_results < len(docs):
            out["NextToken"] = encode_token(offset + max_results)
        return out

    # -- BatchUpdateFindings ---------------------------------------------------

    def batch_update(self, account: str, region: str, body: dict, now: datetime) -> dict:
        with self.lock:
            hub = self.require_enabled(account)
            hub.batch_update_requests += 1
            idents = validate_batch_update(body)
            hub.batch_update_sizes.append(len(idents))
            counts = Counter((i["Id"], i["ProductArn"]) for i in idents)
            processed, unprocessed = [], []
            for ident in idents:
                key = (ident["Id"], ident["ProductArn"])
                stored = hub.findings.get(key)
                if counts[key] > 1:
                    unprocessed.append(_unprocessed(ident, "DuplicatedFindingIdentifier", "Finding Identifier is duplicated"))
                elif stored is None or stored.doc.get("Region") != region:
                    unprocessed.append(_unprocessed(ident, "FindingNotFound", "Finding Not Found"))
                elif (inj := self._take_injection(hub, stored)) is not None:
                    unprocessed.append(_unprocessed(ident, inj.code, inj.message))
                else:
                    apply_update(stored, body, now)
                    processed.append({"Id": ident["Id"], "ProductArn": ident["ProductArn"]})
            return {"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}

    @staticmethod
    def _take_injection(hub: AccountHub, stored: Stored) -> Injection | None:
        inj = hub.unprocessed.get(stored.user_name) if stored.user_name else None
        if inj is None:
            return None
        inj.remaining -= 1
        if inj.remaining <= 0:
            del hub.unprocessed[stored.user_name]
        return inj

    # -- BatchImportFindings ---------------------------------------------------

    def batch_import(self, account: str, region: str, body: dict, now: datetime) -> dict:
        with self.lock:
            hub = self.require_enabled(account)
            self._throttle_import(hub)
            hub.batch_import_requests += 1
            _check_members(body, {"Findings"})
            findings = body.get("Findings")
            if not isinstance(findings, list):
                raise invalid_param("Findings", "should be array")
            if not 1 <= len(findings) <= 100:
                raise invalid_param("Findings", "should NOT have fewer than 1 items" if not findings
                                    else "should NOT have more than 100 items")
            failed = []
            for f in findings:
                problem = asff_problem(f, account)
                if problem is not None:
                    fid = f.get("Id") if isinstance(f, dict) and _nonempty_str(f.get("Id")) else ""
                    failed.append({"Id": fid, "ErrorCode": problem[0], "ErrorMessage": problem[1]})
                else:
                    self._upsert(hub, f, region, now)
            return {"FailedCount": len(failed), "SuccessCount": len(findings) - len(failed),
                    "FailedFindings": failed}

    def _throttle_import(self, hub: AccountHub) -> None:
        """At most import_limit requests in any import_window seconds."""
        if not paging.admit(hub.import_times, self.clock(), self.import_limit, self.import_window):
            hub.batch_import_throttled += 1
            raise HubError(429, "LimitExceededException", "Rate exceeded")

    @staticmethod
    def _upsert(hub: AccountHub, finding: dict, region: str, now: datetime) -> None:
        doc = copy.deepcopy(finding)
        doc["Region"] = region  # Security Hub sets it; BatchImportFindings cannot
        doc.setdefault("RecordState", "ACTIVE")
        doc.setdefault("WorkflowState", "NEW")
        doc.setdefault("Workflow", {"Status": "NEW"})
        key = (doc["Id"], doc["ProductArn"])
        old = hub.findings.get(key)
        if old is None:
            hub.findings[key] = stored = Stored(doc)
        else:
            if old.customer_updated:  # BatchUpdateFindings fields win over the provider's
                for name in ("Note", "Workflow", "UserDefinedFields"):
                    if name in old.doc:
                        doc[name] = old.doc[name]
                    else:
                        doc.pop(name, None)
            old.doc, stored = doc, old
        note = doc.get("Note")
        if isinstance(note, dict) and (not stored.note_history or stored.note_history[-1] != note):
            stored.note_history.append(copy.deepcopy(note))

    # -- control endpoints -------------------------------------------------------

    def findings_view(self, account: str) -> dict:
        with self.lock:
            items = sorted(self.account(account).findings.values(), key=lambda s: s.doc["Id"])
            return {"account": account, "findings": [
                {**copy.deepcopy(s.doc), "note_history": copy.deepcopy(s.note_history), "user_name": s.user_name}
                for s in items]}

    def add_unprocessed(self, account: str, body: dict) -> dict:
        if set(body) - {"user", "count", "code", "message"}:
            raise ControlError(400, "unknown field(s): body takes user, count, code, message")
        user, count = body.get("user"), body.get("count", 1)
        code = body.get("code", DEFAULT_UNPROCESSED_CODE)
        message = body.get("message", DEFAULT_UNPROCESSED_MESSAGE)
        if not _nonempty_str(user):
            raise ControlError(400, "user must be a user name")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ControlError(400, "count must be a positive integer")
        if not _nonempty_str(code) or not _nonempty_str(message):
            raise ControlError(400, "code and message must be non-empty strings")
        with self.lock:
            hub = self.account(account)
            if not any(s.user_name == user for s in hub.findings.values()):
                raise ControlError(404, f"no Security Hub finding for user {user!r} in account {account}")
            hub.unprocessed[user] = Injection(count, code, message)
            return {"unprocessed": {u: {"remaining": i.remaining, "code": i.code, "message": i.message}
                                    for u, i in sorted(hub.unprocessed.items())}}

    def stats(self, account: str) -> dict:
        with self.lock:
            hub = self.account(account)
            return {
                "account": account,
                "enabled": hub.enabled,
                "get_findings_requests": hub.get_findings_requests,
                "batch_update_requests": hub.batch_update_requests,
                "batch_update_sizes": list(hub.batch_update_sizes),
                "batch_import_requests": hub.batch_import_requests,
                "batch_import_throttled": hub.batch_import_throttled,
                "import_rate_limit": self.rate_limit(),
            }

    def reset_stats(self, account: str) -> dict:
        with self.lock:
            hub = self.account(account)
            hub.get_findings_requests = hub.batch_update_requests = 0
            hub.batch_import_requests = hub.batch_import_throttled = 0
            hub.batch_update_sizes = []
            hub.import_times.clear()
        return self.stats(account)

    def rate_limit(self) -> dict:
        return {"limit": self.import_limit, "window_seconds": self.import_window}

    def set_rate_limit(self, body: dict) -> dict:
        try:
            limit, window = paging.parse_rate_limit(body, self.import_limit, self.import_window)
        except ValueError as e:
            raise ControlError(400, str(e)) from None
        with self.lock:
            self.import_limit, self.import_window = limit, window
            for hub in self.accounts.values():
                hub.import_times.clear()
            return self.rate_limit()


def _check_members(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid_input(f"Invalid parameter '{unknown[0]}'. data should NOT have additional properties")


def _unprocessed(ident: dict, code: str, message: str) -> dict:
    return {"FindingIdentifier": {"Id": ident["Id"], "ProductArn": ident["ProductArn"]},
            "ErrorCode": code, "ErrorMessage": message}


SORTABLE_TIMES = ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt")


def parse_sort(raw: Any) -> list[tuple[str, bool]]:
    """SortCriteria -> [(field, descending)]; only fields the harness can sort by."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_param("SortCriteria", "should be array")
    out = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or set(c) - {"Field", "SortOrder"} or not _nonempty_str(c.get("Field")):
            raise invalid_param(f"SortCriteria[{i}]", "should be an object with Field and SortOrder")
        if c["Field"] not in STRING_FIELDS and c["Field"] not in SORTABLE_TIMES:
            raise invalid_input(f"harness: sorting by {c['Field']!r} is not implemented by the emulator")
        if c.get("SortOrder", "asc") not in ("asc", "desc"):
            raise invalid_param(f"SortCriteria[{i}].SortOrder", "should be equal to one of the allowed values: asc, desc")
        out.append((c["Field"], c.get("SortOrder", "asc") == "desc"))
    return out


def sort_findings(docs: list[dict], sort: list[tuple[str, bool]]) -> list[dict]:
    """Stable order: by Id, then by each sort criterion (last applied first)."""
    docs = sorted(docs, key=lambda d: (d.get("Id", ""), d.get("ProductArn", "")))
    for name, desc in reversed(sort):
        if name in SORTABLE_TIMES:
            docs.sort(key=lambda d, n=name: parse_asff_time(d.get(n)) or datetime.min.replace(tzinfo=timezone.utc),
                      reverse=desc)
        else:
            docs.sort(key=lambda d, n=name: (STRING_FIELDS[n](d) or [""])[0], reverse=desc)
    return docs


def validate_batch_update(body: dict) -> list[dict]:
    """The FindingIdentifiers of a valid BatchUpdateFindings body."""
    _check_members(body, {"FindingIdentifiers", *BATCH_UPDATE_FIELDS})
    idents = body.get("FindingIdentifiers")
    if not isinstance(idents, list):
        raise invalid_input("Invalid parameter 'FindingIdentifiers'. data should have required property 'FindingIdentifiers'")
    if not 1 <= len(idents) <= 100:
        raise invalid_param("FindingIdentifiers", "should NOT have fewer than 1 items" if not idents
                            else "should NOT have more than 100 items")
    for i, ident in enumerate(idents):
        if not isinstance(ident, dict) or set(ident) != {"Id", "ProductArn"} \
                or not all(_nonempty_str(v) for v in ident.values()):
            raise invalid_param(f"FindingIdentifiers[{i}]", "should have required properties 'Id' and 'ProductArn'")
    if not any(name in body for name in BATCH_UPDATE_FIELDS):
        raise invalid_input("Invalid parameter 'FindingIdentifiers'. At least one of "
                            + ", ".join(BATCH_UPDATE_FIELDS) + " must be provided")
    if "Workflow" in body:
        wf = body["Workflow"]
        if not isinstance(wf, dict) or set(wf) != {"Status"} or wf["Status"] not in WORKFLOW_STATUSES:
            raise invalid_param("Workflow.Status", "should be equal to one of the allowed values: "
                                + ", ".join(WORKFLOW_STATUSES))
    if "Note" in body:
        validate_note(body["Note"])
    if "UserDefinedFields" in body:
        udf = body["UserDefinedFields"]
        if not isinstance(udf, dict) or not all(_nonempty_str(k) and _nonempty_str(v) for k, v in udf.items()):
            raise invalid_param("UserDefinedFields", "should be an object of non-empty strings")
    return idents


def validate_note(note: Any) -> None:
    if not isinstance(note, dict) or set(note) != {"Text", "UpdatedBy"}:
        raise invalid_param("Note", "should have required properties 'Text' and 'UpdatedBy'")
    for name in ("Text", "UpdatedBy"):
        value = note[name]
        if not isinstance(value, str):
            raise invalid_param(f"Note.{name}", "should be string")
        if not value.strip():
            raise invalid_param(f"Note.{name}", "should NOT be shorter than 1 characters")
        if len(value) > NOTE_MAX:
            raise invalid_param(f"Note.{name}", f"should NOT be longer than {NOTE_MAX} characters")


def apply_update(stored: Stored, body: dict, now: datetime) -> None:
    doc, stamp = stored.doc, asff_time(now)
    if "Workflow" in body:
        doc["Workflow"] = {"Status": body["Workflow"]["Status"]}
    if "Note" in body:
        doc["Note"] = {"Text": body["Note"]["Text"], "UpdatedBy": body["Note"]["UpdatedBy"], "UpdatedAt": stamp}
        stored.note_history.append(dict(doc["Note"]))
    if "UserDefinedFields" in body:
        doc["UserDefinedFields"] = {**(doc.get("UserDefinedFields") or {}), **body["UserDefinedFields"]}
    doc["UpdatedAt"] = stamp
    stored.customer_updated = True


ASFF_REQUIRED = ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "Types",
                 "CreatedAt", "UpdatedAt", "Severity", "Title", "Description", "Resources")
ASFF_ERROR = "Finding does not adhere to Amazon Web Services Security Finding Format. "


def asff_problem(f: Any, account: str) -> tuple[str, str] | None:
    """(ErrorCode, ErrorMessage) for an invalid ASFF finding, else None."""
    if not isinstance(f, dict):
        return "InvalidInput", ASFF_ERROR + "data should be object"
    for name in ASFF_REQUIRED:
        if name not in f:
            return "InvalidInput", ASFF_ERROR + f"data should have required property '{name}'"
    checks = [
        (f["SchemaVersion"] == SCHEMA_VERSION, f"data.SchemaVersion should be equal to '{SCHEMA_VERSION}'"),
        (_nonempty_str(f["Id"]) and len(f["Id"]) <= 512, "data.Id should be a non-empty string of at most 512 characters"),
        (_nonempty_str(f["ProductArn"]), "data.ProductArn should be a non-empty string"),
        (_nonempty_str(f["GeneratorId"]) and len(f["GeneratorId"]) <= 512,
         "data.GeneratorId should be a non-empty string of at most 512 characters"),
        (isinstance(f["AwsAccountId"], str) and bool(ACCOUNT_RE.match(f["AwsAccountId"])),
         "data.AwsAccountId should be a 12-digit account id"),
        (isinstance(f["Types"], list) and 1 <= len(f["Types"]) <= 50 and all(_nonempty_str(t) for t in f["Types"]),
         "data.Types should be an array of 1..50 non-empty strings"),
        (parse_asff_time(f["CreatedAt"]) is not None, "data.CreatedAt should match format 'date-time'"),
        (parse_asff_time(f["UpdatedAt"]) is not None, "data.UpdatedAt should match format 'date-time'"),
        (isinstance(f["Severity"], dict) and f["Severity"].get("Label") in SEVERITY_LABELS,
         "data.Severity.Label should be equal to one of the allowed values: " + ", ".join(SEVERITY_LABELS)),
        (_nonempty_str(f["Title"]) and len(f["Title"]) <= 256, "data.Title should be a non-empty string of at most 256 characters"),
        (_nonempty_str(f["Description"]) and len(f["Description"]) <= 1024,
         "data.Description should be a non-empty string of at most 1024 characters"),
        (isinstance(f["Resources"], list) and 1 <= len(f["Resources"]) <= 32
         and all(isinstance(r, dict) and _nonempty_str(r.get("Type")) and _nonempty_str(r.get("Id"))
                 for r in f["Resources"]),
         "data.Resources should be an array of 1..32 objects with Type and Id"),
    ]
    for ok, message in checks:
        if not ok:
            return "InvalidInput", ASFF_ERROR + message
    if "Note" in f:
        try:
            validate_note({k: v for k, v in f["Note"].items() if k != "UpdatedAt"} if isinstance(f["Note"], dict) else None)
        except HubError as e:
            return "InvalidInput", ASFF_ERROR + e.message
    if f["AwsAccountId"] != account:
        return ("AccessDeniedException",
                f"The AwsAccountId {f['AwsAccountId']} of the finding does not match the calling account {account}")
    return None
