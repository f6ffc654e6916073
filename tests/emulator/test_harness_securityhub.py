"""Tests of the harness's Security Hub and SNS additions (stdlib unittest + boto3).

Run from the repository root:

    python -m unittest discover -s tests/emulator -p 'test_*.py' -v

Each test class starts its own harness (harness.py as a subprocess on
127.0.0.1, port 0) and stops it by its process handle. Nothing depends on
timing: waits are bounded polls, and the 10-per-second import limit is tested
with a window widened through the control endpoint, or with a fake clock.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import securityhub  # noqa: E402  (the module under test, beside harness.py)

HARNESS = HERE / "harness.py"
READY_TIMEOUT = 120.0  # seconds; a busy machine may take a while to import moto
ACCOUNT = "123456789012"
AS_OF = "2026-11-28T12:00:00Z"
PRODUCT_ARN = "arn:aws:securityhub:us-east-1::product/aws/securityhub"


def user_arn(name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:user{path}{name}"


SCENARIO = {
    "as_of": AS_OF,
    "users": [
        {"name": "old-1", "keys": [{"age": "200d"}]},
        {"name": "old-2", "path": "/ci/", "keys": [{"age": "120d"}]},
        {"name": "old-inactive", "keys": [{"status": "Inactive", "age": "300d"}]},
        {"name": "fresh-1", "keys": [{"age": "10d"}]},
        {"name": "fresh-2", "keys": [{"status": "Inactive", "age": "200d"}, {"age": "30d"}]},
        {"name": "boundary", "keys": [{"age": "90d"}]},
        {"name": "no-keys"},
    ],
    "sns_topics": ["key-owners"],
}
ALL_USERS = {u["name"] for u in SCENARIO["users"]}
FAILED_USERS = {"old-1", "old-2"}


class RunningHarness:
    """harness.py in a subprocess, ready when its ready file appears."""

    def __init__(self, scenario: dict | None = SCENARIO, args: tuple[str, ...] = ()):
        self.dir = tempfile.TemporaryDirectory(prefix="rekey-harness-test-")
        ready = Path(self.dir.name, "ready.json")
        cmd = [sys.executable, str(HARNESS), "--ready-file", str(ready), "--watch-parent", *args]
        if scenario is not None:
            path = Path(self.dir.name, "scenario.json")
            path.write_text(json.dumps(scenario))
            cmd += ["--scenario", str(path)]
        self.log_path = Path(self.dir.name, "harness.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if self.proc.poll() is not None:
                log_text = self.log_path.read_text()
                self.dir.cleanup()
                raise RuntimeError(f"harness exited with {self.proc.returncode}: {log_text}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"harness not ready after {READY_TIMEOUT} s")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())
        self.endpoint = self.info["endpoint"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.dir.cleanup()

    def control(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        url = urlsplit(self.endpoint)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: dict | None = None) -> dict:
        status, payload = self.control(method, path, body)
        if status != 200:
            raise AssertionError(f"{method} {path} answered {status}: {payload}")
        return payload

    def aws_raw(self, method: str, path: str, body: bytes, service: str = "securityhub") -> tuple[int, str, dict]:
        """An AWS request boto3 cannot send (an unknown member): status, error type, body.
        The harness reads the service from the credential scope; moto does not check signatures."""
        url = urlsplit(self.endpoint)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        auth = (f"AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/{service}/aws4_request, "
                "SignedHeaders=host, Signature=00")
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", "Authorization": auth})
            resp = conn.getresponse()
            return resp.status, resp.getheader("x-amzn-ErrorType") or "", json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def client(self, service: str, validate: bool = True) -> object:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate),
        )

    def findings_by_user(self) -> dict[str, dict]:
        found = self.ok("GET", "/_rekey/securityhub/findings")["findings"]
        return {f["user_name"]: f for f in found if f["user_name"]}


class HarnessTestCase(unittest.TestCase):
    """One harness for the whole class."""

    scenario: dict | None = SCENARIO
    h: RunningHarness

    @classmethod
    def setUpClass(cls) -> None:
        cls.h = RunningHarness(cls.scenario)
        cls.hub = cls.h.client("securityhub")
        cls.raw_hub = cls.h.client("securityhub", validate=False)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.h.stop()

    def users(self, filters: dict, client: object | None = None, max_results: int = 100) -> set[str]:
        """User names of the findings GetFindings returns, over every page."""
        names, token = [], None
        while True:
            kwargs = {"Filters": filters, "MaxResults": max_results}
            if token:
                kwargs["NextToken"] = token
            page = (client or self.hub).get_findings(**kwargs)
            names += [f["Resources"][0]["Details"]["AwsIamUser"]["UserName"] for f in page["Findings"]]
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual(len(names), len(set(names)), "a finding came back twice")
        return set(names)

    def assertAwsError(self, ctx: unittest.case._AssertRaisesContext, code: str, status: int) -> None:
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status, err)

    def finding_ids(self, *names: str) -> list[dict]:
        by_user = self.h.findings_by_user()
        return [{"Id": by_user[n]["Id"], "ProductArn": by_user[n]["ProductArn"]} for n in names]


def eq(*values: str) -> list[dict]:
    return [{"Value": v, "Comparison": "EQUALS"} for v in values]


def f(comparison: str, *values: str) -> list[dict]:
    return [{"Value": v, "Comparison": comparison} for v in values]


class FilterTests(HarnessTestCase):
    def test_startup_synthesises_one_finding_per_user(self) -> None:
        by_user = self.h.findings_by_user()
        self.assertEqual(set(by_user), ALL_USERS)
        for name, finding in by_user.items():
            status = "FAILED" if name in FAILED_USERS else "PASSED"
            self.assertEqual(finding["Compliance"]["Status"], status, name)
            self.assertEqual(finding["Workflow"]["Status"], "NEW" if status == "FAILED" else "RESOLVED")
            self.assertEqual(finding["RecordState"], "ACTIVE")
            self.assertRegex(finding["Id"], r"^arn:aws:securityhub:us-east-1:123456789012:security-control/IAM\.3/"
                                            r"finding/[0-9a-f-]{36}$")
        old2 = by_user["old-2"]
        self.assertEqual(old2["Resources"][0]["Id"], user_arn("old-2", "/ci/"))
        self.assertEqual(old2["Resources"][0]["Type"], "AwsIamUser")
        self.assertEqual(old2["Resources"][0]["Details"]["AwsIamUser"]["Path"], "/ci/")
        self.assertEqual(old2["ProductArn"], PRODUCT_ARN)
        self.assertEqual(old2["GeneratorId"], "security-control/IAM.3")
        self.assertEqual(old2["Compliance"]["SecurityControlId"], "IAM.3")
        self.assertEqual(old2["Severity"], {"Label": "MEDIUM", "Normalized": 40, "Original": "MEDIUM"})
        self.assertEqual(old2["ProductFields"]["aws/securityhub/ProductName"], "Security Hub")
        self.assertEqual(old2["SchemaVersion"], "2018-10-08")

    def test_each_field_and_equals(self) -> None:
        old1 = self.h.findings_by_user()["old-1"]
        self.assertEqual(self.users({"ComplianceStatus": eq("FAILED")}), FAILED_USERS)
        self.assertEqual(self.users({"Id": eq(old1["Id"])}), {"old-1"})
        self.assertEqual(self.users({"ProductArn": eq(PRODUCT_ARN)}), ALL_USERS)
        self.assertEqual(self.users({"GeneratorId": eq("security-control/IAM.3")}), ALL_USERS)
        self.assertEqual(self.users({"AwsAccountId": eq(ACCOUNT)}), ALL_USERS)
        self.assertEqual(self.users({"AwsAccountId": eq("111111111111")}), set())
        self.assertEqual(self.users({"ComplianceSecurityControlId": eq("IAM.3")}), ALL_USERS)
        self.assertEqual(self.users({"ComplianceSecurityControlId": eq("IAM.4")}), set())
        self.assertEqual(self.users({"RecordState": eq("ACTIVE")}), ALL_USERS)
        self.assertEqual(self.users({"WorkflowStatus": eq("NEW")}), FAILED_USERS)
        self.assertEqual(self.users({"ResourceId": eq(user_arn("old-2", "/ci/"))}), {"old-2"})
        self.assertEqual(self.users({"ResourceId": eq(user_arn("old-2"))}), set())  # the path is in the ARN
        self.assertEqual(self.users({"ResourceType": eq("AwsIamUser")}), ALL_USERS)
        self.assertEqual(self.users({"Title": eq("IAM users' access keys should be rotated every 90 days or less")}),
                         ALL_USERS)
        self.assertEqual(self.users({"Title": eq("IAM users' access keys")}), set())  # EQUALS is not PREFIX

    def test_positive_comparisons_on_one_field_are_ored(self) -> None:
        arns = (user_arn("old-1"), user_arn("fresh-1"))
        self.assertEqual(self.users({"ResourceId": eq(*arns)}), {"old-1", "fresh-1"})
        self.assertEqual(self.users({"ResourceId": f("CONTAINS", "fresh", "boundary")}),
                         {"fresh-1", "fresh-2", "boundary"})
        self.assertEqual(self.users({"ResourceId": f("PREFIX", user_arn("fresh"), user_arn("ci/"))}),
                         {"fresh-1", "fresh-2", "old-2"})
        # EQUALS and PREFIX mix, still OR'd.
        self.assertEqual(self.users({"ResourceId": eq(user_arn("no-keys")) + f("PREFIX", user_arn("old-"))}),
                         {"no-keys", "old-1", "old-inactive"})

    def test_negative_comparisons_on_one_field_are_anded(self) -> None:
        arns = (user_arn("old-1"), user_arn("fresh-1"))
        self.assertEqual(self.users({"ResourceId": f("NOT_EQUALS", *arns)}), ALL_USERS - {"old-1", "fresh-1"})
        self.assertEqual(self.users({"ResourceId": f("NOT_CONTAINS", "fresh", "old")}), {"boundary", "no-keys"})
        self.assertEqual(self.users({"ResourceId": f("PREFIX_NOT_EQUALS", user_arn("ci/"), user_arn("fresh"))}),
                         ALL_USERS - {"old-2", "fresh-1", "fresh-2"})
        self.assertEqual(self.users({"ResourceId": f("NOT_EQUALS", user_arn("boundary"))
                                     + f("PREFIX_NOT_EQUALS", user_arn("old"))}),
                         {"fresh-1", "fresh-2", "no-keys", "old-2"})

    def test_positive_and_negative_on_one_field_are_anded(self) -> None:
        self.assertEqual(self.users({"ResourceId": f("PREFIX", user_arn("fresh-"))
                                     + f("NOT_EQUALS", user_arn("fresh-1"))}), {"fresh-2"})
        self.assertEqual(self.users({"ResourceId": f("PREFIX", user_arn("old"), user_arn("fresh"))
                                     + f("PREFIX_NOT_EQUALS", user_arn("old-i"))
                                     + f("NOT_EQUALS", user_arn("fresh-2"))}), {"old-1", "fresh-1"})

    def test_different_fields_are_anded(self) -> None:
        self.assertEqual(self.users({"ComplianceStatus": eq("PASSED"), "ResourceId": f("CONTAINS", "old")}),
                         {"old-inactive"})
        self.assertEqual(self.users({"ComplianceStatus": eq("FAILED"), "WorkflowStatus": eq("RESOLVED")}), set())

    def test_invalid_filters(self) -> None:
        status, error_type, body = self.h.aws_raw("POST", "/findings", json.dumps(
            {"Filters": {"NoSuchField": eq("x")}}).encode())
        self.assertEqual((status, error_type, body["Code"]), (400, "InvalidInputException", "InvalidInputException"))
        self.assertIn("NoSuchField", body["Message"])
        status, error_type, _ = self.h.aws_raw("POST", "/findings", b"[not json")
        self.assertEqual((status, error_type), (400, "InvalidInputException"))
        cases = [
            {"ComplianceStatus": f("LIKE", "FAILED")},
            {"ComplianceStatus": f("CONTAINS_WORD", "FAILED")},
            {"ComplianceStatus": f("EQUALS", *[f"v{i}" for i in range(21)])},
            {"ComplianceStatus": [{"Value": "", "Comparison": "EQUALS"}]},
            {"ComplianceStatus": eq("FAILED") + f("NOT_EQUALS", "PASSED")},  # AWS refuses this combination
            {"Title": f("CONTAINS", "IAM") + f("PREFIX", "IAM")},
            {"MalwareName": eq("x")},  # valid in AWS, not implemented: refused, never ignored
        ]
        for filters in cases:
            with self.subTest(filters=filters), self.assertRaises(ClientError) as ctx:
                self.raw_hub.get_findings(Filters=filters)
            self.assertAwsError(ctx, "InvalidInputException", 400)
        self.assertEqual(len(self.users({"ComplianceStatus": f("EQUALS", *[f"v{i}" for i in range(20)])})), 0)

    def test_paging_max_results_2(self) -> None:
        pages, token = [], None
        while True:
            kwargs = {"Filters": {}, "MaxResults": 2, **({"NextToken": token} if token else {})}
            page = self.hub.get_findings(**kwargs)
            pages.append([x["Id"] for x in page["Findings"]])
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual([len(p) for p in pages], [2, 2, 2, 1])
        ids = [i for p in pages for i in p]
        self.assertEqual(ids, sorted(ids))  # stable order: by Id
        everything = self.hub.get_findings(MaxResults=100)
        self.assertNotIn("NextToken", everything)
        self.assertEqual([x["Id"] for x in everything["Findings"]], ids)
        # paging with a filter
        self.assertEqual(self.users({"ComplianceStatus": eq("PASSED")}, max_results=2), ALL_USERS - FAILED_USERS)

    def test_bad_paging_parameters(self) -> None:
        for kwargs in ({"NextToken": "not-a-token"}, {"NextToken": "cmVrZXktZmluZGluZ3M6LTE="},  # offset -1
                       {"MaxResults": 0}, {"MaxResults": 101}):
            with self.subTest(kwargs=kwargs), self.assertRaises(ClientError) as ctx:
                self.raw_hub.get_findings(**kwargs)
            self.assertAwsError(ctx, "InvalidInputException", 400)

    def test_calls_are_counted_by_operation_name(self) -> None:
        self.hub.get_findings(MaxResults=1)
        calls = self.h.ok("GET", "/_rekey/calls")["by_operation"]
        self.assertGreaterEqual(calls.get("securityhub:GetFindings", 0), 1)


class BatchUpdateTests(HarnessTestCase):
    def setUp(self) -> None:
        self.h.ok("POST", "/_rekey/securityhub/stats/reset")

    def test_101_identifiers_is_invalid_input(self) -> None:
        idents = [{"Id": f"id-{i}", "ProductArn": PRODUCT_ARN} for i in range(101)]
        with self.assertRaises(ClientError) as ctx:
            self.hub.batch_update_findings(FindingIdentifiers=idents, Workflow={"Status": "NOTIFIED"})
        self.assertAwsError(ctx, "InvalidInputException", 400)
        self.assertIn("100", ctx.exception.response["Error"]["Message"])
        with self.assertRaises(ClientError) as ctx:
            self.hub.batch_update_findings(FindingIdentifiers=[], Workflow={"Status": "NOTIFIED"})
        self.assertAwsError(ctx, "InvalidInputException", 400)
        stats = self.h.ok("GET", "/_rekey/securityhub/stats")
        self.assertEqual((stats["batch_update_requests"], stats["batch_update_sizes"]), (2, []))

    def test_note_length(self) -> None:
        ident = self.finding_ids("fresh-1")
        for text in ("x" * 513, ""):
            with self.subTest(length=len(text)), self.assertRaises(ClientError) as ctx:
                self.hub.batch_update_findings(FindingIdentifiers=ident, Note={"Text": text, "UpdatedBy": "rekey"})
            self.assertAwsError(ctx, "InvalidInputException", 400)
        self.assertEqual(self.h.findings_by_user()["fresh-1"]["note_history"], [])
        out = self.hub.batch_update_findings(FindingIdentifiers=ident, Note={"Text": "y" * 512, "UpdatedBy": "rekey"})
        self.assertEqual(out["ProcessedFindings"], ident)

    def test_no_update_field_is_invalid(self) -> None:
        with self.assertRaises(ClientError) as ctx:
            self.hub.batch_update_findings(FindingIdentifiers=self.finding_ids("fresh-2"))
        self.assertAwsError(ctx, "InvalidInputException", 400)

    def test_update_notes_workflow_and_fields(self) -> None:
        ident = self.finding_ids("old-1")
        before = self.h.findings_by_user()["old-1"]
        out = self.hub.batch_update_findings(
            FindingIdentifiers=ident, Workflow={"Status": "NOTIFIED"},
            Note={"Text": "rotation planned", "UpdatedBy": "rekey"}, UserDefinedFields={"rekey:state": "planned"})
        self.assertEqual((out["ProcessedFindings"], out["UnprocessedFindings"]), (ident, []))
        self.hub.batch_update_findings(FindingIdentifiers=ident, Note={"Text": "rotated", "UpdatedBy": "rekey"},
                                       UserDefinedFields={"rekey:new-key": "AKIA..."},
                                       Severity={"Label": "LOW"}, VerificationState="TRUE_POSITIVE")
        after = self.h.findings_by_user()["old-1"]
        self.assertEqual(after["Workflow"]["Status"], "NOTIFIED")
        self.assertEqual(after["Note"]["Text"], "rotated")
        self.assertEqual(after["Note"]["UpdatedBy"], "rekey")
        self.assertRegex(after["Note"]["UpdatedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual([n["Text"] for n in after["note_history"]], ["rotation planned", "rotated"])
        self.assertLessEqual({"rekey:state": "planned", "rekey:new-key": "AKIA..."}.items(),
                             after["UserDefinedFields"].items())  # merged
        self.assertGreaterEqual(after["UpdatedAt"], before["UpdatedAt"])
        self.assertEqual(after["Severity"]["Label"], "MEDIUM")  # accepted, ignored
        # GetFindings sees the update
        self.assertEqual(self.users({"WorkflowStatus": eq("NOTIFIED"), "ResourceId": f("CONTAINS", "old-")}),
                         {"old-1"})
        stats = self.h.ok("GET", "/_rekey/securityhub/stats")
        self.assertEqual(stats["batch_update_sizes"], [1, 1])

    def test_unknown_finding_is_unprocessed(self) -> None:
        known = self.finding_ids("boundary")
        unknown = {"Id": known[0]["Id"] + "-nope", "ProductArn": PRODUCT_ARN}
        wrong_product = {"Id": known[0]["Id"], "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty"}
        out = self.hub.batch_update_findings(FindingIdentifiers=known + [unknown, wrong_product],
                                             Workflow={"Status": "NOTIFIED"})
        self.assertEqual(out["ProcessedFindings"], known)
        self.assertEqual([(u["FindingIdentifier"], u["ErrorCode"]) for u in out["UnprocessedFindings"]],
                         [(unknown, "FindingNotFound"), (wrong_product, "FindingNotFound")])
        self.assertEqual(out["UnprocessedFindings"][0]["ErrorMessage"], "Finding Not Found")

    def test_duplicated_identifier_is_unprocessed(self) -> None:
        ident = self.finding_ids("no-keys")
        out = self.hub.batch_update_findings(FindingIdentifiers=ident * 2, Workflow={"Status": "NOTIFIED"})
        self.assertEqual(out["ProcessedFindings"], [])
        self.assertEqual({u["ErrorCode"] for u in out["UnprocessedFindings"]}, {"DuplicatedFindingIdentifier"})

    def test_unprocessed_injection(self) -> None:
        self.h.ok("POST", "/_rekey/securityhub/unprocessed", {"user": "old-2", "count": 2})
        idents = self.finding_ids("old-2", "old-inactive")
        note = {"Text": "asked owner", "UpdatedBy": "rekey"}
        for _ in range(2):
            out = self.hub.batch_update_findings(FindingIdentifiers=idents, Note=note)
            self.assertEqual(out["ProcessedFindings"], idents[1:])
            self.assertEqual(out["UnprocessedFindings"], [{"FindingIdentifier": idents[0],
                                                           "ErrorCode": "ConcurrentUpdateError",
                                                           "ErrorMessage": "Concurrent finding updates detected"}])
        self.assertEqual(self.h.findings_by_user()["old-2"]["note_history"], [])
        self.assertNotIn("Note", self.h.findings_by_user()["old-2"])
        out = self.hub.batch_update_findings(FindingIdentifiers=idents, Note=note)
        self.assertEqual(out["ProcessedFindings"], idents)
        self.assertEqual(len(self.h.findings_by_user()["old-2"]["note_history"]), 1)
        # custom code and message
        self.h.ok("POST", "/_rekey/securityhub/unprocessed",
                  {"user": "old-2", "code": "InternalFailure", "message": "Internal service failure"})
        out = self.hub.batch_update_findings(FindingIdentifiers=idents[:1], Note=note)
        self.assertEqual(out["UnprocessedFindings"][0]["ErrorCode"], "InternalFailure")

    def test_unprocessed_endpoint_validation(self) -> None:
        for body, status in (({"user": "nobody"}, 404), ({"user": "old-1", "count": 0}, 400),
                             ({"user": "old-1", "color": "red"}, 400), ({}, 400)):
            with self.subTest(body=body):
                self.assertEqual(self.h.control("POST", "/_rekey/securityhub/unprocessed", body)[0], status)

    def test_fault_injection_on_batch_update(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "securityhub:BatchUpdateFindings",
                                              "code": "LimitExceededException", "status": 429,
                                              "message": "Rate exceeded"})
        with self.assertRaises(ClientError) as ctx:
            self.hub.batch_update_findings(FindingIdentifiers=self.finding_ids("fresh-2"),
                                           Workflow={"Status": "NOTIFIED"})
        self.assertAwsError(ctx, "LimitExceededException", 429)
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"], [])

    def test_batches_of_at_most_100(self) -> None:
        # 250 identifiers in 3 batches; the stats show the sizes.
        idents = self.finding_ids(*sorted(ALL_USERS))
        fake = [{"Id": f"x-{i}", "ProductArn": PRODUCT_ARN} for i in range(250 - len(idents))]
        everything = idents + fake
        for start in range(0, len(everything), 100):
            self.hub.batch_update_findings(FindingIdentifiers=everything[start:start + 100],
                                           UserDefinedFields={"batch": str(start)})
        stats = self.h.ok("GET", "/_rekey/securityhub/stats")
        self.assertEqual(stats["batch_update_sizes"], [100, 100, 50])
        self.assertTrue(all(n <= 100 for n in stats["batch_update_sizes"]))


class EvaluateTests(unittest.TestCase):
    """Workflow rules on re-evaluation; a fresh harness for every test."""

    def setUp(self) -> None:
        self.h = RunningHarness()
        self.addCleanup(self.h.stop)
        self.hub = self.h.client("securityhub")
        self.iam = self.h.client("iam")

    def set_key_age(self, user: str, days: int) -> None:
        key = self.h.ok("GET", f"/_rekey/keys?user={quote(user)}")["keys"][-1]
        created = datetime(2026, 11, 28, 12) - timedelta(days=days)
        self.h.ok("POST", f"/_rekey/keys/{key['access_key_id']}", {"created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ")})

    def evaluate(self, body: dict | None = None) -> dict:
        return self.h.ok("POST", "/_rekey/securityhub/evaluate", body or {})

    def state(self, user: str) -> tuple[str, str, str]:
        x = self.h.findings_by_user()[user]
        return x["Compliance"]["Status"], x["Workflow"]["Status"], x["RecordState"]

    def set_workflow(self, user: str, status: str) -> None:
        by_user = self.h.findings_by_user()
        ident = {"Id": by_user[user]["Id"], "ProductArn": by_user[user]["ProductArn"]}
        out = self.hub.batch_update_findings(FindingIdentifiers=[ident], Workflow={"Status": status})
        self.assertEqual(out["ProcessedFindings"], [ident])

    def test_fail_pass_fail(self) -> None:
        ids = {u: x["Id"] for u, x in self.h.findings_by_user().items()}
        self.assertEqual(self.state("old-1"), ("FAILED", "NEW", "ACTIVE"))
        self.set_key_age("old-1", 1)
        summary = self.evaluate()
        self.assertEqual(summary["compliance"], {"FAILED": 1, "PASSED": 6})
        self.assertEqual(self.state("old-1"), ("PASSED", "RESOLVED", "ACTIVE"))
        self.set_key_age("old-1", 91)
        self.evaluate()
        self.assertEqual(self.state("old-1"), ("FAILED", "NEW", "ACTIVE"))
        self.assertEqual({u: x["Id"] for u, x in self.h.findings_by_user().items()}, ids)  # stable Ids

    def test_notified_is_resolved_on_pass_and_new_on_fail(self) -> None:
        self.set_workflow("old-2", "NOTIFIED")
        self.set_key_age("old-2", 5)
        self.evaluate()
        self.assertEqual(self.state("old-2"), ("PASSED", "RESOLVED", "ACTIVE"))
        self.set_workflow("fresh-1", "NOTIFIED")  # PASSED and NOTIFIED, then it fails
        self.set_key_age("fresh-1", 100)
        self.evaluate()
        self.assertEqual(self.state("fresh-1"), ("FAILED", "NEW", "ACTIVE"))

    def test_suppressed_is_kept(self) -> None:
        self.set_workflow("old-1", "SUPPRESSED")
        self.set_key_age("old-1", 1)
        self.evaluate()
        self.assertEqual(self.state("old-1"), ("PASSED", "SUPPRESSED", "ACTIVE"))
        self.set_key_age("old-1", 300)
        self.evaluate()
        self.assertEqual(self.state("old-1"), ("FAILED", "SUPPRESSED", "ACTIVE"))

    def test_deleted_user_is_archived(self) -> None:
        key = self.h.ok("GET", "/_rekey/keys?user=fresh-1")["keys"][0]["access_key_id"]
        self.iam.delete_access_key(UserName="fresh-1", AccessKeyId=key)
        self.iam.delete_user(UserName="fresh-1")
        summary = self.evaluate()
        self.assertEqual((summary["active"], summary["archived"]), (6, 1))
        self.assertEqual(self.state("fresh-1"), ("PASSED", "RESOLVED", "ARCHIVED"))
        self.assertNotIn("fresh-1", {f["Resources"][0]["Details"]["AwsIamUser"]["UserName"] for f in
                                     self.hub.get_findings(Filters={"RecordState": eq("ACTIVE")})["Findings"]})
        # A user created over the API is evaluated too.
        self.iam.create_user(UserName="newcomer")
        self.iam.create_access_key(UserName="newcomer")
        self.evaluate()
        self.assertEqual(self.state("newcomer"), ("PASSED", "RESOLVED", "ACTIVE"))

    def test_evaluate_as_of(self) -> None:
        summary = self.evaluate({"as_of": "2027-03-08T12:00:00Z"})  # 100 days later
        self.assertEqual(summary["as_of"], "2027-03-08T12:00:00Z")
        failed = {u for u, x in self.h.findings_by_user().items() if x["Compliance"]["Status"] == "FAILED"}
        self.assertEqual(failed, FAILED_USERS | {"fresh-1", "fresh-2", "boundary"})
        for body in ({"as_of": "yesterday"}, {"when": AS_OF}):
            self.assertEqual(self.h.control("POST", "/_rekey/securityhub/evaluate", body)[0], 400)


class EnabledTests(HarnessTestCase):
    scenario = {**SCENARIO, "securityhub": {"enabled": False}}

    def test_not_enabled_is_invalid_access(self) -> None:
        self.assertFalse(self.h.ok("GET", "/_rekey/securityhub/enabled")["enabled"])
        calls = [
            lambda: self.hub.get_findings(),
            lambda: self.hub.batch_update_findings(FindingIdentifiers=[{"Id": "x", "ProductArn": PRODUCT_ARN}],
                                                   Workflow={"Status": "NEW"}),
            lambda: self.hub.describe_hub(),
        ]
        for call in calls:
            with self.assertRaises(ClientError) as ctx:
                call()
            self.assertAwsError(ctx, "InvalidAccessException", 401)
            self.assertEqual(ctx.exception.response["Error"]["Message"],
                             "Account 123456789012 is not subscribed to AWS Security Hub")
        # findings were synthesised anyway, and are served once enabled
        self.h.ok("POST", "/_rekey/securityhub/enabled", {"enabled": True})
        self.assertEqual(len(self.hub.get_findings()["Findings"]), len(ALL_USERS))
        self.assertIn("HubArn", self.hub.describe_hub())
        self.h.ok("POST", "/_rekey/securityhub/enabled", {"enabled": False})
        with self.assertRaises(ClientError) as ctx:
            self.hub.get_findings()
        self.assertAwsError(ctx, "InvalidAccessException", 401)
        self.hub.enable_security_hub()
        self.assertEqual(len(self.hub.get_findings()["Findings"]), len(ALL_USERS))

    def test_enabled_endpoint_validation(self) -> None:
        for body in ({"enabled": "yes"}, {}, {"enabled": True, "x": 1}):
            self.assertEqual(self.h.control("POST", "/_rekey/securityhub/enabled", body)[0], 400)
        self.assertEqual(self.h.control("GET", "/_rekey/securityhub/enabled?account=12")[0], 400)

    def test_other_account_is_enabled_by_default(self) -> None:
        out = self.h.ok("GET", "/_rekey/securityhub/enabled?account=111111111111")
        self.assertTrue(out["enabled"])

    def test_account_of_assumed_role_credentials(self) -> None:
        creds = self.h.client("sts").assume_role(RoleArn="arn:aws:iam::222222222222:role/auditor",
                                                 RoleSessionName="audit")["Credentials"]
        other = boto3.client("securityhub", endpoint_url=self.h.endpoint, region_name="us-east-1",
                             aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                             aws_session_token=creds["SessionToken"], config=Config(retries={"total_max_attempts": 1}))
        self.assertEqual(other.get_findings()["Findings"], [])  # enabled there, and nothing evaluated yet
        self.h.ok("POST", "/_rekey/securityhub/enabled?account=222222222222", {"enabled": False})
        with self.assertRaises(ClientError) as ctx:
            other.get_findings()
        self.assertAwsError(ctx, "InvalidAccessException", 401)
        self.assertIn("Account 222222222222 ", ctx.exception.response["Error"]["Message"])
        self.h.ok("POST", "/_rekey/securityhub/enabled?account=222222222222", {"enabled": True})


def asff(account: str = ACCOUNT, **overrides: object) -> dict:
    finding = {
        "SchemaVersion": "2018-10-08",
        "Id": "rekey/custom/1",
        "ProductArn": f"arn:aws:securityhub:us-east-1:{account}:product/{account}/default",
        "GeneratorId": "rekey",
        "AwsAccountId": account,
        "Types": ["Software and Configuration Checks/AWS Security Best Practices"],
        "CreatedAt": "2026-11-28T12:00:00Z",
        "UpdatedAt": "2026-11-28T12:00:00.123Z",
        "Severity": {"Label": "LOW"},
        "Title": "rekey rotated a key",
        "Description": "A key was rotated",
        "Resources": [{"Type": "AwsIamAccessKey", "Id": "AKIAEXAMPLE"}],
    }
    finding.update(overrides)
    return finding


class ImportTests(HarnessTestCase):
    def setUp(self) -> None:
        self.h.ok("POST", "/_rekey/securityhub/import-rate-limit", {"limit": 10, "window_seconds": 1})
        self.h.ok("POST", "/_rekey/securityhub/stats/reset")

    def test_valid_and_invalid_mix(self) -> None:
        no_title = asff(Id="rekey/custom/2")
        del no_title["Title"]
        out = self.raw_hub.batch_import_findings(Findings=[
            asff(), no_title, asff(Id="rekey/custom/3", AwsAccountId="111111111111"),
            asff(Id="rekey/custom/4", SchemaVersion="2020-01-01"), asff(Id="rekey/custom/5", Resources=[]),
        ])
        self.assertEqual((out["SuccessCount"], out["FailedCount"]), (1, 4))
        failed = {x["Id"]: x for x in out["FailedFindings"]}
        self.assertEqual(set(failed), {"rekey/custom/2", "rekey/custom/3", "rekey/custom/4", "rekey/custom/5"})
        self.assertIn("Title", failed["rekey/custom/2"]["ErrorMessage"])
        self.assertEqual(failed["rekey/custom/2"]["ErrorCode"], "InvalidInput")
        mine = {"ProductArn": eq(asff()["ProductArn"]), "Id": f("PREFIX", "rekey/custom/")}
        got = self.hub.get_findings(Filters=mine)["Findings"]
        self.assertEqual([x["Id"] for x in got], ["rekey/custom/1"])
        self.assertEqual(got[0]["Region"], "us-east-1")
        self.assertEqual(got[0]["RecordState"], "ACTIVE")
        # upsert by Id + ProductArn
        self.hub.batch_import_findings(Findings=[asff(Title="rekey rotated a key again")])
        got = self.hub.get_findings(Filters=mine)["Findings"]
        self.assertEqual([x["Title"] for x in got], ["rekey rotated a key again"])

    def test_finding_count_limits(self) -> None:
        for findings in ([], [asff(Id=f"bulk/{i}") for i in range(101)]):
            with self.subTest(n=len(findings)), self.assertRaises(ClientError) as ctx:
                self.raw_hub.batch_import_findings(Findings=findings)
            self.assertAwsError(ctx, "InvalidInputException", 400)

    def test_throttle_with_a_wide_window(self) -> None:
        # A window of an hour makes "11 requests within the window" certain,
        # however slow the machine.
        self.h.ok("POST", "/_rekey/securityhub/import-rate-limit", {"window_seconds": 3600})
        outcomes = []
        for i in range(11):
            try:
                self.hub.batch_import_findings(Findings=[asff(Id=f"burst/{i}")])
                outcomes.append("ok")
            except ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], "LimitExceededException")
                self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 429)
                outcomes.append("throttled")
        self.assertEqual(outcomes, ["ok"] * 10 + ["throttled"])
        stats = self.h.ok("GET", "/_rekey/securityhub/stats")
        self.assertEqual((stats["batch_import_requests"], stats["batch_import_throttled"]), (10, 1))
        self.assertEqual(stats["import_rate_limit"], {"limit": 10, "window_seconds": 3600.0})

    def test_rate_limit_endpoint_validation(self) -> None:
        for body in ({}, {"limit": 0}, {"window_seconds": 0}, {"limit": 5, "burst": 1}, {"limit": True}):
            with self.subTest(body=body):
                self.assertEqual(self.h.control("POST", "/_rekey/securityhub/import-rate-limit", body)[0], 400)
        self.assertEqual(self.h.ok("GET", "/_rekey/securityhub/import-rate-limit"),
                         {"limit": 10, "window_seconds": 1.0})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RateWindowUnitTests(unittest.TestCase):
    """The 10-per-second window itself, with a clock the test controls."""

    def test_more_than_10_within_one_second_is_throttled(self) -> None:
        clock = FakeClock()
        hub = securityhub.SecurityHub(clock=clock)
        now = datetime(2026, 11, 28, 12)

        def send() -> str:
            try:
                hub.batch_import(ACCOUNT, "us-east-1", {"Findings": [asff()]}, now)
                return "ok"
            except securityhub.HubError as e:
                self.assertEqual((e.status, e.code), (429, "LimitExceededException"))
                return "throttled"

        results = []
        for _ in range(10):
            results.append(send())
            clock.now += 0.09  # 10 requests over 0.81 s
        results.append(send())  # the 11th, 0.9 s after the first
        self.assertEqual(results, ["ok"] * 10 + ["throttled"])
        clock.now = 1000.0 + 1.0  # the first request leaves the window
        self.assertEqual(send(), "ok")
        self.assertEqual(send(), "throttled")
        clock.now += 10
        self.assertEqual([send() for _ in range(10)], ["ok"] * 10)
        self.assertEqual(hub.stats(ACCOUNT)["batch_import_throttled"], 2)


class WorkflowRuleUnitTests(unittest.TestCase):
    def test_next_workflow(self) -> None:
        nw = securityhub.next_workflow
        self.assertEqual(nw("NEW", "FAILED", "PASSED", False), "RESOLVED")
        self.assertEqual(nw("NOTIFIED", "FAILED", "PASSED", False), "RESOLVED")
        self.assertEqual(nw("RESOLVED", "PASSED", "FAILED", False), "NEW")
        self.assertEqual(nw("NOTIFIED", "PASSED", "FAILED", False), "NEW")
        self.assertEqual(nw("NEW", "FAILED", "FAILED", False), "NEW")
        self.assertEqual(nw("NOTIFIED", "FAILED", "FAILED", False), "NOTIFIED")
        self.assertEqual(nw("RESOLVED", "FAILED", "FAILED", True), "NEW")  # archived -> active
        for old, new in (("FAILED", "PASSED"), ("PASSED", "FAILED")):
            self.assertEqual(nw("SUPPRESSED", old, new, True), "SUPPRESSED")


class SnsTests(HarnessTestCase):
    def test_publish_is_captured(self) -> None:
        sns = self.h.client("sns")
        arn = f"arn:aws:sns:us-east-1:{ACCOUNT}:key-owners"
        self.assertIn(arn, [t["TopicArn"] for t in sns.list_topics()["Topics"]])
        sns.publish(TopicArn=arn, Subject="Rotate your key", Message="Key AKIA... of old-1 is 200 days old",
                    MessageAttributes={"user": {"DataType": "String", "StringValue": "old-1"},
                                       "age": {"DataType": "Number", "StringValue": "200"}})
        sns.publish(TopicArn=arn, Message="second")
        by_name = self.h.ok("GET", "/_rekey/sns/messages?topic=key-owners")
        by_arn = self.h.ok("GET", "/_rekey/sns/messages?topic=" + quote(arn, safe=""))
        self.assertEqual(by_name, by_arn)
        self.assertEqual(by_name["topic_arn"], arn)
        first, second = by_name["messages"]
        self.assertEqual(first["Subject"], "Rotate your key")
        self.assertEqual(first["Message"], "Key AKIA... of old-1 is 200 days old")
        self.assertEqual(first["MessageAttributes"], {"user": {"DataType": "String", "StringValue": "old-1"},
                                                      "age": {"DataType": "Number", "StringValue": "200"}})
        self.assertRegex(first["PublishedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIsNone(second["Subject"])
        self.assertEqual(second["Message"], "second")

    def test_topic_created_at_runtime(self) -> None:
        arn = self.h.ok("POST", "/_rekey/sns/topics", {"name": "runtime-topic"})["arn"]
        self.assertEqual(arn, f"arn:aws:sns:us-east-1:{ACCOUNT}:runtime-topic")
        self.h.client("sns").publish(TopicArn=arn, Message="hello")
        self.assertEqual([m["Message"] for m in self.h.ok("GET", "/_rekey/sns/messages?topic=runtime-topic")["messages"]],
                         ["hello"])

    def test_sns_endpoint_errors(self) -> None:
        self.assertEqual(self.h.control("GET", "/_rekey/sns/messages?topic=nope")[0], 404)
        self.assertEqual(self.h.control("GET", "/_rekey/sns/messages")[0], 400)
        self.assertEqual(self.h.control("POST", "/_rekey/sns/topics", {"name": "bad name"})[0], 400)
        self.assertEqual(self.h.control("POST", "/_rekey/sns/topics", {})[0], 400)


class ExistingBehaviourTests(unittest.TestCase):
    def test_demo_scenario_starts_and_health_answers(self) -> None:
        scenario = json.loads((HERE / "scenarios" / "demo.json").read_text())
        h = RunningHarness(scenario)
        self.addCleanup(h.stop)
        self.assertEqual(h.ok("GET", "/_rekey/health"), {"ok": True})
        self.assertEqual(h.info["account_id"], ACCOUNT)
        truth = h.ok("GET", "/_rekey/truth")
        self.assertEqual(truth["summary"]["users"], 9)
        summary = h.ok("POST", "/_rekey/securityhub/evaluate")
        self.assertEqual(summary["findings"], 9)

    def test_bad_scenario_keys_exit_2(self) -> None:
        for extra in ({"securityhub": {"enabled": "no"}}, {"securityhub": {"region": "eu-west-1"}},
                      {"sns_topics": ["bad name"]}, {"sns_topics": ["a", "a"]}, {"sns_topics": "a"}):
            with self.subTest(extra=extra), tempfile.TemporaryDirectory() as d:
                path = Path(d, "scenario.json")
                path.write_text(json.dumps({**SCENARIO, **extra}))
                run = subprocess.run([sys.executable, str(HARNESS), "--scenario", str(path)],
                                     capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertRegex(run.stderr, r"^harness: bad scenario .*(securityhub|sns_topics)")


if __name__ == "__main__":
    unittest.main()
