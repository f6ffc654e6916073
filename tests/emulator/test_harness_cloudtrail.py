"""Tests of the harness's CloudTrail: recorded requests, seeded history,
LookupEvents, its throttle and its denial (stdlib unittest + boto3).

Run from the repository root:

    python -m unittest discover -s tests/emulator -p 'test_*.py' -v

Each test class starts its own harness (harness.py as a subprocess on
127.0.0.1, port 0, see RunningHarness) and stops it by its process handle.
Nothing depends on the machine's speed: the LookupEvents throttle is widened
through the control endpoint (limit 100000 a second) except where a test sets
it to "N per hour" to count exactly, and the store's own tests use fake clocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import unittest
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cloudtrail  # noqa: E402  (the module under test, beside harness.py)
from test_harness_securityhub import RunningHarness  # noqa: E402  (the subprocess wrapper)

HARNESS = HERE / "harness.py"
MGMT, MEMBER, LOCKED = "123456789012", "111111111111", "222222222222"
CLI_AGENT = "aws-cli/2.15.0 Python/3.11.6 Linux/5.10"
WIDE_OPEN = {"limit": 100000, "window_seconds": 1}

SCENARIO = {
    "users": [
        {"name": "hosts", "keys": [{"age": "200d"}, {"age": "10d"}]},
        {"name": "objects", "keys": [{"age": "5d"}]},
        {"name": "regions", "keys": [{"age": "5d"}]},
        {"name": "history", "keys": [{"age": "100d"}]},
        {"name": "extra", "keys": [{"age": "3d"}]},
    ],
    "cloudtrail": {"events": [
        {"user": "history", "key": 0, "ago": "1h", "source_ip": "10.0.1.5", "user_agent": CLI_AGENT,
         "service": "s3", "event_name": "ListBuckets", "region": "us-east-1", "count": 300, "every": "1h"},
        {"user": "history", "ago": "30m", "service": "s3", "event_name": "GetObject", "count": 5, "every": "1m"},
    ]},
    "accounts": [
        {"id": MEMBER, "users": [{"name": "member-user", "keys": [{"age": "5d"}]}],
         "cloudtrail": {"events": [{"user": "member-user", "ago": "1d", "service": "iam", "event_name": "ListUsers"}]}},
        {"id": LOCKED, "users": [{"name": "locked-user", "keys": [{"age": "5d"}]}], "cloudtrail": {"enabled": False}},
    ],
}


def by_key(key: str) -> list[dict]:
    return [{"AttributeKey": "AccessKeyId", "AttributeValue": key}]


def trail_doc(event: dict) -> dict:
    return json.loads(event["CloudTrailEvent"])


class CloudTrailTestCase(unittest.TestCase):
    """One harness for the whole class, with LookupEvents' throttle opened wide."""

    scenario: dict = SCENARIO
    h: RunningHarness

    @classmethod
    def setUpClass(cls) -> None:
        cls.h = RunningHarness(cls.scenario)
        cls.h.ok("POST", "/_rekey/cloudtrail/rate-limit", WIDE_OPEN)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.h.stop()

    def key(self, user: str, index: int = 0, account: str = MGMT) -> str:
        keys = self.h.ok("GET", f"/_rekey/keys?user={quote(user)}&account={account}")["keys"]
        return sorted(keys, key=lambda k: k["created_at"])[index]["access_key_id"]

    def client(self, service: str, key: str = "testing", region: str = "us-east-1", agent: str | None = None,
               forwarded: str | None = None, attempts: int = 1, validate: bool = True,
               session_token: str | None = None) -> object:
        """A boto3 client signing with `key` (the harness does not check
        secrets); `agent` is appended to the User-Agent and `forwarded` sent
        as X-Forwarded-For, to play a host."""
        client = boto3.client(
            service, endpoint_url=self.h.endpoint, region_name=region,
            aws_access_key_id=key, aws_secret_access_key="secret", aws_session_token=session_token,
            config=Config(retries={"total_max_attempts": attempts, "mode": "standard"},
                          user_agent_extra=agent, parameter_validation=validate))
        if forwarded is not None:
            def add_header(request: object, **_kwargs: object) -> None:
                request.headers["X-Forwarded-For"] = forwarded

            client.meta.events.register(f"before-sign.{client.meta.service_model.endpoint_prefix}", add_header)
        return client

    def lookup_pages(self, client: object | None = None, **kwargs: object) -> list[list[dict]]:
        """Every page of a LookupEvents query, following NextToken."""
        client = client or self.client("cloudtrail")
        pages, token = [], None
        for _ in range(1000):
            page = client.lookup_events(**kwargs, **({"NextToken": token} if token else {}))
            pages.append(page["Events"])
            token = page.get("NextToken")
            if not token:
                return pages
        self.fail("NextToken chain does not end")

    def lookup(self, client: object | None = None, **kwargs: object) -> list[dict]:
        return [e for page in self.lookup_pages(client, **kwargs) for e in page]

    def assertAwsError(self, ctx: unittest.case._AssertRaisesContext, code: str, status: int = 400) -> dict:
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status, err)
        return err

    def assertNewestFirst(self, events: list[dict]) -> None:
        times = [e["EventTime"] for e in events]
        self.assertEqual(times, sorted(times, reverse=True))


class RecordingTests(CloudTrailTestCase):
    def test_calls_from_two_hosts_show_up_newest_first(self) -> None:
        key = self.key("hosts", 1)
        a = {"agent": "rekey-test/host-a", "forwarded": "10.0.0.1"}
        b = {"agent": "rekey-test/host-b", "forwarded": "192.0.2.7, 10.9.9.9"}  # the first hop counts
        self.client("sts", key, **a).get_caller_identity()
        self.client("s3", key, **b).list_buckets()
        self.client("s3", key, **a).create_bucket(Bucket="hosts-bucket")
        self.client("iam", key, **b).list_users()
        events = self.lookup(LookupAttributes=by_key(key))
        self.assertEqual([(e["EventName"], e["EventSource"]) for e in events],
                         [("ListUsers", "iam.amazonaws.com"), ("CreateBucket", "s3.amazonaws.com"),
                          ("ListBuckets", "s3.amazonaws.com"), ("GetCallerIdentity", "sts.amazonaws.com")])
        self.assertNewestFirst(events)
        hosts = [(trail_doc(e)["sourceIPAddress"], trail_doc(e)["userAgent"].rsplit(" ", 1)[-1]) for e in events]
        self.assertEqual(hosts, [("192.0.2.7", "rekey-test/host-b"), ("10.0.0.1", "rekey-test/host-a"),
                                 ("192.0.2.7", "rekey-test/host-b"), ("10.0.0.1", "rekey-test/host-a")])
        self.assertTrue(all(trail_doc(e)["userAgent"].startswith("Boto3/") for e in events))
        self.assertEqual({e["AccessKeyId"] for e in events}, {key})
        self.assertEqual({e["Username"] for e in events}, {"hosts"})
        self.assertEqual([e["ReadOnly"] for e in events], ["true", "false", "true", "true"])

    def test_event_shape(self) -> None:
        key = self.key("hosts", 0)
        self.client("sts", key, agent="shape", forwarded="10.1.2.3").get_caller_identity()
        [event] = self.lookup(LookupAttributes=by_key(key))
        self.assertEqual(set(event), {"EventId", "EventName", "ReadOnly", "AccessKeyId", "EventTime", "EventSource",
                                      "Username", "Resources", "CloudTrailEvent"})
        self.assertEqual(event["Resources"], [])
        doc = trail_doc(event)
        self.assertEqual(doc["userIdentity"], {
            "type": "IAMUser", "principalId": doc["userIdentity"]["principalId"],
            "arn": f"arn:aws:iam::{MGMT}:user/hosts", "accountId": MGMT, "accessKeyId": key, "userName": "hosts"})
        user_id = self.client("iam").get_user(UserName="hosts")["User"]["UserId"]
        self.assertEqual(doc["userIdentity"]["principalId"], user_id)
        self.assertEqual(doc["eventTime"], event["EventTime"].strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.assertLess(abs(event["EventTime"] - datetime.now(timezone.utc)), timedelta(minutes=5))
        expected = {"eventVersion": "1.09", "eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity",
                    "awsRegion": "us-east-1", "sourceIPAddress": "10.1.2.3", "requestParameters": None,
                    "responseElements": None, "eventID": event["EventId"], "readOnly": True,
                    "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": MGMT,
                    "eventCategory": "Management"}
        self.assertEqual({k: doc[k] for k in expected}, expected)
        self.assertTrue(doc["userAgent"].endswith(" shape"))
        self.assertRegex(doc["requestID"], r"^[0-9a-f-]{36}$")

    def test_s3_object_calls_are_recorded_but_not_returned(self) -> None:
        key = self.key("objects")
        s3 = self.client("s3", key)
        s3.create_bucket(Bucket="objects-bucket")
        s3.put_object(Bucket="objects-bucket", Key="a/b.txt", Body=b"x")
        s3.get_object(Bucket="objects-bucket", Key="a/b.txt")
        s3.head_object(Bucket="objects-bucket", Key="a/b.txt")
        s3.list_objects_v2(Bucket="objects-bucket")
        s3.delete_object(Bucket="objects-bucket", Key="a/b.txt")
        self.assertEqual([e["EventName"] for e in self.lookup(LookupAttributes=by_key(key))], ["CreateBucket"])
        recorded = self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}")["events"]
        self.assertEqual([(e["event_name"], e["management"]) for e in recorded],
                         [("DeleteObject", False), ("ListObjectsV2", False), ("HeadObject", False),
                          ("GetObject", False), ("PutObject", False), ("CreateBucket", True)])
        self.assertEqual(self.lookup(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetObject"}]),
                         [])  # nor the seeded GetObject series

    def test_global_service_events_are_only_in_us_east_1(self) -> None:
        key = self.key("regions")
        self.client("sts", key, region="eu-west-1").get_caller_identity()
        self.client("s3", key, region="eu-west-1").list_buckets()
        east = self.lookup(self.client("cloudtrail"), LookupAttributes=by_key(key))
        west = self.lookup(self.client("cloudtrail", region="eu-west-1"), LookupAttributes=by_key(key))
        self.assertEqual([(e["EventName"], trail_doc(e)["awsRegion"]) for e in east],
                         [("GetCallerIdentity", "us-east-1")])
        self.assertEqual([(e["EventName"], trail_doc(e)["awsRegion"]) for e in west],
                         [("ListBuckets", "eu-west-1")])

    def test_another_accounts_events_are_never_returned(self) -> None:
        member_key = self.key("member-user", account=MEMBER)
        self.client("sts", member_key).get_caller_identity()
        self.assertEqual(self.lookup(LookupAttributes=by_key(member_key)), [])
        everything = self.lookup()
        self.assertTrue(everything)
        self.assertEqual({trail_doc(e)["recipientAccountId"] for e in everything}, {MGMT})
        self.assertNotIn(member_key, {e.get("AccessKeyId") for e in everything})
        # The member's own credentials see the member's events, seeded ones too.
        own = self.lookup(self.client("cloudtrail", member_key), LookupAttributes=by_key(member_key))
        self.assertEqual([e["EventName"] for e in own], ["GetCallerIdentity", "ListUsers"])
        self.assertEqual({trail_doc(e)["recipientAccountId"] for e in own}, {MEMBER})

    def test_assumed_role_events(self) -> None:
        creds = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{MEMBER}:role/OrganizationAccountAccessRole",
            RoleSessionName="rekey-session")["Credentials"]
        self.client("sts", creds["AccessKeyId"], session_token=creds["SessionToken"]).get_caller_identity()
        [event] = self.lookup(self.client("cloudtrail", creds["AccessKeyId"], session_token=creds["SessionToken"]),
                              LookupAttributes=by_key(creds["AccessKeyId"]))
        self.assertEqual(event["Username"], "rekey-session")
        identity = trail_doc(event)["userIdentity"]
        self.assertEqual(identity["type"], "AssumedRole")
        self.assertEqual(identity["arn"], f"arn:aws:sts::{MEMBER}:assumed-role/OrganizationAccountAccessRole/rekey-session")
        self.assertEqual(identity["accountId"], MEMBER)
        self.assertEqual(identity["sessionContext"]["sessionIssuer"]["arn"],
                         f"arn:aws:iam::{MEMBER}:role/OrganizationAccountAccessRole")
        self.assertTrue(identity["principalId"].endswith(":rekey-session"))

    def test_an_access_key_status_change_shows_its_parameters(self) -> None:
        key = self.key("extra")
        iam = self.client("iam")
        for status in ("Inactive", "Active"):
            iam.update_access_key(UserName="extra", AccessKeyId=key, Status=status)
        events = self.lookup(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "UpdateAccessKey"}])
        changes = [trail_doc(e)["requestParameters"] for e in events]
        self.assertEqual([c for c in changes if c["accessKeyId"] == key], [
            {"userName": "extra", "accessKeyId": key, "status": "Active"},
            {"userName": "extra", "accessKeyId": key, "status": "Inactive"}])

    def test_failed_calls_are_recorded(self) -> None:
        key = self.key("extra")
        self.h.ok("POST", "/_rekey/faults", {"operation": "sts:GetCallerIdentity", "code": "AccessDenied",
                                              "status": 403})
        with self.assertRaises(ClientError):
            self.client("sts", key).get_caller_identity()
        self.client("sts", key).get_caller_identity()
        recorded = self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}")["events"]
        self.assertEqual([(e["status"], e["success"]) for e in recorded], [(200, True), (403, False)])
        self.assertEqual(len(self.lookup(LookupAttributes=by_key(key))), 2)


class SeededHistoryTests(CloudTrailTestCase):
    def history(self) -> list[dict]:
        key = self.key("history")
        return [e for e in self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}")["events"]
                if e["event_name"] == "ListBuckets"]

    def test_300_events_come_in_6_pages_of_50(self) -> None:
        key = self.key("history")
        pages = self.lookup_pages(LookupAttributes=by_key(key))
        self.assertEqual([len(p) for p in pages], [50] * 6)
        events = [e for p in pages for e in p]
        self.assertEqual(len({e["EventId"] for e in events}), 300)
        times = [e["EventTime"] for e in events]
        self.assertEqual([a - b for a, b in zip(times, times[1:])], [timedelta(hours=1)] * 299)
        self.assertLess(abs(datetime.now(timezone.utc) - timedelta(hours=1) - times[0]), timedelta(minutes=5))
        self.assertEqual([e["EventId"] for e in events], [e["event_id"] for e in self.history()])
        self.assertEqual({(e["EventName"], trail_doc(e)["sourceIPAddress"], trail_doc(e)["userAgent"])
                          for e in events}, {("ListBuckets", "10.0.1.5", CLI_AGENT)})
        smaller = self.lookup_pages(LookupAttributes=by_key(key), MaxResults=7)
        self.assertEqual([len(p) for p in smaller], [7] * 42 + [6])
        self.assertEqual([e["EventId"] for p in smaller for e in p], [e["EventId"] for e in events])

    def test_start_and_end_time(self) -> None:
        key = self.key("history")
        times = [datetime.strptime(e["event_time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                 for e in self.history()]
        pages = self.lookup_pages(LookupAttributes=by_key(key), StartTime=times[19], EndTime=times[10], MaxResults=4)
        self.assertEqual([len(p) for p in pages], [4, 4, 2])  # both ends included
        self.assertEqual([e["EventTime"] for p in pages for e in p], times[10:20])
        self.assertEqual(self.lookup(LookupAttributes=by_key(key), EndTime=times[299] - timedelta(seconds=1)), [])
        self.assertEqual(len(self.lookup(LookupAttributes=by_key(key), StartTime=times[5])), 6)

    def test_other_lookup_attributes(self) -> None:
        users = self.lookup(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "history"}])
        self.assertEqual(len(users), 300)
        one = users[123]
        found = self.lookup(LookupAttributes=[{"AttributeKey": "EventId", "AttributeValue": one["EventId"]}])
        self.assertEqual([e["EventId"] for e in found], [one["EventId"]])
        source = self.lookup(LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "s3.amazonaws.com"}])
        self.assertGreaterEqual(len(source), 300)
        self.assertEqual({e["EventSource"] for e in source}, {"s3.amazonaws.com"})
        writes = self.lookup(LookupAttributes=[{"AttributeKey": "ReadOnly", "AttributeValue": "false"}])
        self.assertNotIn("ListBuckets", {e["EventName"] for e in writes})

    def test_bad_requests(self) -> None:
        ct = self.client("cloudtrail", validate=False)
        key = self.key("history")
        cases = [
            ({"LookupAttributes": by_key(key) * 2}, "InvalidLookupAttributesException"),
            ({"LookupAttributes": [{"AttributeKey": "Bogus", "AttributeValue": "x"}]}, "InvalidLookupAttributesException"),
            ({"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": ""}]},
             "InvalidLookupAttributesException"),
            ({"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "yes"}]},
             "InvalidLookupAttributesException"),
            ({"StartTime": datetime(2026, 2, 1), "EndTime": datetime(2026, 1, 1)}, "InvalidTimeRangeException"),
            ({"MaxResults": 51}, "InvalidMaxResultsException"),
            ({"MaxResults": 0}, "InvalidMaxResultsException"),
            ({"NextToken": "bm90LWEtdG9rZW4="}, "InvalidNextTokenException"),
            ({"EventCategory": "data"}, "InvalidEventCategoryException"),
        ]
        for kwargs, code in cases:
            with self.subTest(kwargs=kwargs), self.assertRaises(ClientError) as ctx:
                ct.lookup_events(**kwargs)
            self.assertAwsError(ctx, code)
        with self.assertRaises(ClientError) as ctx:
            ct.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceType", "AttributeValue": "AWS::IAM::User"}])
        self.assertIn("harness:", self.assertAwsError(ctx, "InvalidParameterException")["Error"]["Message"])
        self.assertEqual(ct.lookup_events(EventCategory="insight")["Events"], [])

    def test_next_token_is_bound_to_its_parameters(self) -> None:
        key = self.key("history")
        token = self.client("cloudtrail").lookup_events(LookupAttributes=by_key(key))["NextToken"]
        with self.assertRaises(ClientError) as ctx:
            self.client("cloudtrail").lookup_events(
                LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "history"}], NextToken=token)
        self.assertAwsError(ctx, "InvalidNextTokenException")
        with self.assertRaises(ClientError) as ctx:
            self.client("cloudtrail", region="eu-west-1").lookup_events(LookupAttributes=by_key(key), NextToken=token)
        self.assertAwsError(ctx, "InvalidNextTokenException")

    def test_events_added_at_runtime(self) -> None:
        key = self.key("extra")
        added = self.h.ok("POST", "/_rekey/cloudtrail/events", {
            "access_key_id": key, "ago": "2d", "service": "secretsmanager", "event_name": "GetSecretValue",
            "region": "eu-west-1", "source_ip": "10.7.7.7", "user_agent": "cron-job/1.0", "count": 3, "every": "1m"})
        self.assertEqual(added, {"account": MGMT, "access_key_id": key, "added": 3})
        west = self.lookup(self.client("cloudtrail", region="eu-west-1"), LookupAttributes=by_key(key))
        self.assertEqual([(e["EventName"], e["EventSource"], e["Username"]) for e in west],
                         [("GetSecretValue", "secretsmanager.amazonaws.com", "extra")] * 3)
        self.assertEqual([e["EventTime"] for e in west][0] - west[-1]["EventTime"], timedelta(minutes=2))
        self.assertEqual({trail_doc(e)["sourceIPAddress"] for e in west}, {"10.7.7.7"})
        view = self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}&limit=2")
        self.assertEqual(len(view["events"]), 2)
        self.assertGreaterEqual(view["total"], 3)
        controlled = [e for e in self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}")["events"]
                      if e["origin"] == "control"]
        self.assertEqual(len(controlled), 3)

    def test_bad_runtime_events(self) -> None:
        key = self.key("extra")
        base = {"access_key_id": key, "ago": "1d", "service": "s3", "event_name": "ListBuckets"}
        cases = [
            ({**base, "user": "extra"}, 400, "unknown field"),
            ({**base, "access_key_id": None}, 400, "access_key_id"),
            ({k: v for k, v in base.items() if k != "event_name"}, 400, "event_name: required"),
            ({**base, "ago": "91d"}, 400, "90 days"),
            ({**base, "count": 100, "every": "1d"}, 400, "90 days"),
            ({**base, "count": 2}, 400, "every: required"),
            ({**base, "source_ip": "host-a"}, 400, "source_ip"),
            ({**base, "service": "iam", "event_name": "ListUsers", "region": "eu-west-1"}, 400, "us-east-1"),
            ({**base, "region": "moon"}, 400, "region"),
            ({**base, "access_key_id": "AKIANOSUCHKEY0000000"}, 404, "no access key"),
        ]
        for body, status, text in cases:
            with self.subTest(body=body):
                got, payload = self.h.control("POST", "/_rekey/cloudtrail/events", body)
                self.assertEqual(got, status, payload)
                self.assertIn(text, payload["error"])
        got, payload = self.h.control("GET", "/_rekey/cloudtrail/events?limit=0")
        self.assertEqual(got, 400, payload)


class ResourceTests(CloudTrailTestCase):
    """Seeded events with resources, an error code and a VPC endpoint, as
    LookupEvents and the event's record show them."""

    BUCKET = {"type": "AWS::S3::Bucket", "name": "reports", "arn": "arn:aws:s3:::reports"}
    KEY = {"type": "AWS::KMS::Key", "name": "arn:aws:kms:us-east-1:123456789012:key/k1",
           "arn": "arn:aws:kms:us-east-1:123456789012:key/k1"}
    STACK = {"type": "AWS::CloudFormation::Stack", "name": "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1"}
    scenario = {
        "users": [{"name": "u", "keys": [{"age": "5d"}]}],
        "cloudtrail": {"events": [
            {"user": "u", "ago": "1h", "service": "s3", "event_name": "GetBucketPolicy", "resources": [BUCKET],
             "vpc_endpoint_id": "vpce-0a1b2c3d", "source_ip": "10.0.1.5"},
            {"user": "u", "ago": "2h", "service": "kms", "event_name": "Decrypt", "resources": [KEY, STACK],
             "error_code": "AccessDenied"},
            {"user": "u", "ago": "3h", "service": "s3", "event_name": "ListBuckets"},
        ]},
    }

    def test_resources_error_and_endpoint(self) -> None:
        key = self.key("u")
        seeded = ("GetBucketPolicy", "Decrypt", "ListBuckets")  # the other test adds one more
        bucket, decrypt, plain = [e for e in self.lookup(LookupAttributes=by_key(key)) if e["EventName"] in seeded]
        self.assertEqual(bucket["Resources"], [{"ResourceType": "AWS::S3::Bucket", "ResourceName": "reports"}])
        doc = trail_doc(bucket)
        self.assertEqual(doc["resources"], [{"accountId": MGMT, "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::reports"}])
        self.assertEqual(doc["vpcEndpointId"], "vpce-0a1b2c3d")
        self.assertNotIn("errorCode", doc)
        self.assertEqual([r["ResourceType"] for r in decrypt["Resources"]], ["AWS::KMS::Key", "AWS::CloudFormation::Stack"])
        doc = trail_doc(decrypt)
        self.assertEqual([r["ARN"] for r in doc["resources"]], [self.KEY["arn"]], "only resources with an ARN")
        self.assertEqual(doc["errorCode"], "AccessDenied")
        self.assertEqual((plain["Resources"], set(trail_doc(plain)) & {"resources", "errorCode", "vpcEndpointId"}), ([], set()))
        view = self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}")["events"]
        self.assertEqual([e["success"] for e in view if e["event_name"] in seeded], [True, False, True])

    def test_resources_added_at_runtime_and_bad_ones(self) -> None:
        key = self.key("u")
        base = {"access_key_id": key, "ago": "4h", "service": "cloudformation", "event_name": "DescribeStacks"}
        self.h.ok("POST", "/_rekey/cloudtrail/events", {**base, "resources": [self.STACK]})
        found = [e for e in self.lookup(LookupAttributes=by_key(key)) if e["EventName"] == "DescribeStacks"]
        self.assertEqual(found[0]["Resources"], [{"ResourceType": "AWS::CloudFormation::Stack", "ResourceName": self.STACK["name"]}])
        cases = [
            ({**base, "resources": {}}, "resources: a list"),
            ({**base, "resources": [{"name": "x"}]}, r"resources[0].type"),
            ({**base, "resources": [{"type": "AWS::S3::Bucket"}]}, r"resources[0].name"),
            ({**base, "resources": [{**self.BUCKET, "arn": "reports"}]}, r"resources[0].arn"),
            ({**base, "resources": [{**self.BUCKET, "region": "x"}]}, "unknown field"),
            ({**base, "resources": [self.BUCKET] * 21}, "at most 20"),
            ({**base, "error_code": "Access Denied"}, "error_code"),
            ({**base, "vpc_endpoint_id": "endpoint-1"}, "vpc_endpoint_id"),
        ]
        for body, text in cases:
            with self.subTest(body=body):
                got, payload = self.h.control("POST", "/_rekey/cloudtrail/events", body)
                self.assertEqual(got, 400, payload)
                self.assertIn(text, payload["error"])


class ControlTests(CloudTrailTestCase):
    """The throttle and the switch; each test restores what it changes."""

    def tearDown(self) -> None:
        self.h.ok("POST", "/_rekey/cloudtrail/rate-limit", WIDE_OPEN)
        self.h.ok("POST", "/_rekey/cloudtrail/enabled", {"enabled": True})

    def test_throttle_lets_exactly_n_through(self) -> None:
        self.h.ok("POST", "/_rekey/cloudtrail/rate-limit", {"limit": 3, "window_seconds": 3600})
        self.h.ok("POST", "/_rekey/cloudtrail/stats/reset")
        ct = self.client("cloudtrail")
        for _ in range(3):
            ct.lookup_events(MaxResults=1)
        with self.assertRaises(ClientError) as ctx:
            ct.lookup_events(MaxResults=1)
        self.assertEqual(self.assertAwsError(ctx, "ThrottlingException")["Error"]["Message"], "Rate exceeded")
        stats = self.h.ok("GET", "/_rekey/cloudtrail/stats")
        self.assertEqual((stats["lookup_events_requests"], stats["lookup_events_throttled"]), (3, 1))
        self.assertEqual(stats["rate_limit"], {"limit": 3, "window_seconds": 3600.0})
        # Per account and region: another region and another account still pass.
        self.client("cloudtrail", region="eu-west-1").lookup_events(MaxResults=1)
        self.client("cloudtrail", self.key("member-user", account=MEMBER)).lookup_events(MaxResults=1)

    def test_sdk_retries_the_throttling(self) -> None:
        self.h.ok("POST", "/_rekey/cloudtrail/rate-limit", {"limit": 1, "window_seconds": 3600})
        self.h.ok("POST", "/_rekey/cloudtrail/stats/reset")
        ct = self.client("cloudtrail", attempts=3)
        ct.lookup_events(MaxResults=1)
        with self.assertRaises(ClientError) as ctx:
            ct.lookup_events(MaxResults=1)
        self.assertAwsError(ctx, "ThrottlingException")
        self.assertEqual(self.h.ok("GET", "/_rekey/cloudtrail/stats")["lookup_events_throttled"], 3)

    def test_rate_limit_endpoint(self) -> None:
        self.assertEqual(self.h.ok("POST", "/_rekey/cloudtrail/rate-limit", {"limit": 2, "window_seconds": 1}),
                         {"limit": 2, "window_seconds": 1.0})
        self.assertEqual(self.h.ok("GET", "/_rekey/cloudtrail/rate-limit"), {"limit": 2, "window_seconds": 1.0})
        for body in ({}, {"limit": 0}, {"limit": True}, {"window_seconds": 0}, {"window_seconds": 86401},
                     {"rate": 1}):
            with self.subTest(body=body):
                status, payload = self.h.control("POST", "/_rekey/cloudtrail/rate-limit", body)
                self.assertEqual(status, 400, payload)

    def test_scenario_account_without_cloudtrail_is_denied(self) -> None:
        key = self.key("locked-user", account=LOCKED)
        with self.assertRaises(ClientError) as ctx:
            self.client("cloudtrail", key).lookup_events()
        message = self.assertAwsError(ctx, "AccessDeniedException")["Error"]["Message"]
        self.assertIn(f"arn:aws:iam::{LOCKED}:user/locked-user", message)
        self.assertIn("cloudtrail:LookupEvents", message)
        self.assertEqual(self.h.ok("GET", f"/_rekey/cloudtrail/enabled?account={LOCKED}"),
                         {"account": LOCKED, "enabled": False})
        stats = self.h.ok("GET", f"/_rekey/cloudtrail/stats?account={LOCKED}")
        self.assertEqual((stats["lookup_events_denied"], stats["lookup_events_requests"]), (1, 0))
        # The denied call itself is recorded, as a failure.
        [recorded] = self.h.ok("GET", f"/_rekey/cloudtrail/events?access_key_id={key}")["events"]
        self.assertEqual((recorded["event_name"], recorded["status"]), ("LookupEvents", 400))

    def test_switching_cloudtrail_off_and_on(self) -> None:
        self.assertEqual(self.h.ok("POST", "/_rekey/cloudtrail/enabled", {"enabled": False}),
                         {"account": MGMT, "enabled": False})
        with self.assertRaises(ClientError) as ctx:
            self.client("cloudtrail").lookup_events()
        self.assertAwsError(ctx, "AccessDeniedException")
        self.client("cloudtrail", self.key("member-user", account=MEMBER)).lookup_events()  # other accounts are not
        self.h.ok("POST", "/_rekey/cloudtrail/enabled", {"enabled": True})
        self.assertTrue(self.client("cloudtrail").lookup_events()["Events"])
        for body in ({}, {"enabled": "no"}, {"enabled": False, "account": MGMT}):
            with self.subTest(body=body):
                status, payload = self.h.control("POST", "/_rekey/cloudtrail/enabled", body)
                self.assertEqual(status, 400, payload)
        status, _ = self.h.control("POST", "/_rekey/cloudtrail/enabled?account=12", {"enabled": True})
        self.assertEqual(status, 400)

    def test_calls_are_counted_by_operation_name(self) -> None:
        self.h.ok("POST", "/_rekey/calls/reset")
        self.client("cloudtrail").lookup_events(MaxResults=1)
        self.client("s3").list_buckets()
        calls = self.h.ok("GET", "/_rekey/calls")["by_operation"]
        self.assertEqual(calls, {"cloudtrail:LookupEvents": 1, "s3:ListBuckets": 1})


class AnchorTests(CloudTrailTestCase):
    """"anchor": "as_of" counts "ago" back from the scenario's as_of."""

    AS_OF = (datetime.now(timezone.utc) - timedelta(days=10)).replace(microsecond=0)
    scenario = {
        "as_of": AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "users": [{"name": "u", "keys": [{"age": "1d"}]}],
        "cloudtrail": {"anchor": "as_of", "events": [
            {"user": "u", "ago": "1d", "service": "ec2", "event_name": "DescribeInstances", "region": "eu-central-1"}]},
    }

    def test_events_are_ago_before_as_of(self) -> None:
        [event] = self.lookup(self.client("cloudtrail", region="eu-central-1"),
                              LookupAttributes=by_key(self.key("u")))
        self.assertEqual(event["EventTime"], self.AS_OF - timedelta(days=1))
        self.assertEqual(event["EventSource"], "ec2.amazonaws.com")


class DemoScenarioTests(CloudTrailTestCase):
    """scenarios/cloudtrail-demo.json tells its story."""

    scenario = json.loads((HERE / "scenarios" / "cloudtrail-demo.json").read_text())

    def hosts(self, user: str, index: int = 0, region: str = "us-east-1") -> dict[str, int]:
        events = self.lookup(self.client("cloudtrail", region=region), LookupAttributes=by_key(self.key(user, index)))
        found: dict[str, int] = {}
        for e in events:
            ip = trail_doc(e)["sourceIPAddress"]
            found[ip] = found.get(ip, 0) + 1
        return found

    def test_story(self) -> None:
        self.assertEqual(self.hosts("ci-deployer"), {"10.0.1.5": 240, "10.0.1.6": 240, "203.0.113.40": 1})
        self.assertEqual(self.hosts("batch-nightly", region="eu-west-1"), {"10.0.2.10": 60})  # no GetObject
        self.assertEqual(self.hosts("forgotten-bot"), {})
        old = self.lookup(LookupAttributes=by_key(self.key("svc-rotating", 0)))
        self.assertLess(old[0]["EventTime"], datetime.now(timezone.utc) - timedelta(days=9))
        self.assertEqual(len(old), 80)
        self.assertEqual(self.hosts("svc-rotating", 1), {"10.0.3.7": 10})
        with self.assertRaises(ClientError) as ctx:
            self.client("cloudtrail", self.key("legacy", account=LOCKED)).lookup_events()
        self.assertAwsError(ctx, "AccessDeniedException")


class StoreTests(unittest.TestCase):
    """cloudtrail.py in-process, with fake clocks."""

    NOW = 1_800_000_000
    IDENTITY = cloudtrail.Identity("IAMUser", MGMT, "AIDAEXAMPLE", f"arn:aws:iam::{MGMT}:user/u", "u", "u")

    def store(self, **kwargs: object) -> tuple[cloudtrail.CloudTrail, list[float], list[float]]:
        wall, mono = [float(self.NOW)], [0.0]
        trail = cloudtrail.CloudTrail(clock=lambda: wall[0], monotonic=lambda: mono[0], **kwargs)
        return trail, wall, mono

    def record(self, trail: cloudtrail.CloudTrail, name: str = "ListUsers", key: str = "AKIAONE") -> None:
        trail.record(MGMT, "us-east-1", "iam", name, key, self.IDENTITY, "10.0.0.1", "agent", 200)

    def names(self, trail: cloudtrail.CloudTrail, body: dict | None = None) -> list[str]:
        return [e["EventName"] for e in trail.lookup_events(MGMT, "us-east-1", body or {}, lambda: "arn")["Events"]]

    def test_the_store_is_bounded_and_drops_the_oldest(self) -> None:
        trail, _, _ = self.store(max_events=5)
        trail.set_rate_limit({"limit": 100000})
        for i in range(7):
            self.record(trail, f"Call{i}")
        self.assertEqual(self.names(trail), [f"Call{i}" for i in range(6, 1, -1)])
        self.assertEqual(trail.stats(MGMT)["dropped_events"], 2)

    def test_events_older_than_90_days_are_never_returned(self) -> None:
        trail, wall, _ = self.store()
        trail.set_rate_limit({"limit": 100000})
        spec = cloudtrail.parse_series({"ago": "89d", "service": "s3", "event_name": "ListBuckets"}, "x", frozenset())
        trail.add_series([(MGMT, "AKIAONE", self.IDENTITY, spec)], self.NOW, "control")
        self.assertEqual(self.names(trail, {"StartTime": 0}), ["ListBuckets"])
        wall[0] += 2 * 86400
        self.assertEqual(self.names(trail, {"StartTime": 0}), [])
        self.assertEqual(len(trail.events_view(None, None, 10)["events"]), 1)  # still recorded

    def test_two_per_second_per_account_and_region(self) -> None:
        trail, _, mono = self.store()
        lookup = lambda region="us-east-1", account=MGMT: trail.lookup_events(account, region, {}, lambda: "arn")  # noqa: E731
        lookup(), lookup()
        with self.assertRaises(cloudtrail.CtError) as ctx:
            lookup()
        self.assertEqual((ctx.exception.code, ctx.exception.status), ("ThrottlingException", 400))
        lookup("eu-west-1")
        lookup(account=MEMBER)
        mono[0] += 0.5
        with self.assertRaises(cloudtrail.CtError):
            lookup()
        mono[0] += 0.5
        lookup()
        self.assertEqual(trail.stats(MGMT)["lookup_events_throttled"], 2)

    def test_newest_first_in_the_same_second_is_recording_order(self) -> None:
        trail, _, _ = self.store()
        for name in ("First", "Second", "Third"):
            self.record(trail, name)
        self.assertEqual(self.names(trail), ["Third", "Second", "First"])

    def test_global_services_and_read_only(self) -> None:
        self.assertEqual(cloudtrail.event_region("iam", "eu-west-1"), "us-east-1")
        self.assertEqual(cloudtrail.event_region("sts", "ap-south-1"), "us-east-1")
        self.assertEqual(cloudtrail.event_region("s3", "eu-west-1"), "eu-west-1")
        self.assertTrue(cloudtrail.is_read_only("GetCallerIdentity"))
        self.assertFalse(cloudtrail.is_read_only("UpdateAccessKey"))
        self.assertFalse(cloudtrail.is_management("s3", "PutObject"))
        self.assertTrue(cloudtrail.is_management("s3", "CreateBucket"))


class S3NamingTests(unittest.TestCase):
    """protocol.s3_operation_name: S3 REST calls by API name (no moto needed)."""

    def name(self, method: str, path: str, query: str = "", host: str = "127.0.0.1:5000", **headers: str) -> str:
        import protocol
        from urllib.parse import parse_qs

        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_HOST": host, **headers}
        return protocol.s3_operation_name(environ, parse_qs(query, keep_blank_values=True))

    def test_names(self) -> None:
        cases = [
            (("GET", "/"), "ListBuckets"),
            (("PUT", "/b"), "CreateBucket"),
            (("HEAD", "/b"), "HeadBucket"),
            (("DELETE", "/b/"), "DeleteBucket"),
            (("GET", "/b", "list-type=2&prefix=a"), "ListObjectsV2"),
            (("GET", "/b", "prefix=a"), "ListObjects"),
            (("GET", "/b", "policy"), "GetBucketPolicy"),
            (("PUT", "/b", "versioning"), "PutBucketVersioning"),
            (("GET", "/b", "location"), "GetBucketLocation"),
            (("POST", "/b", "delete"), "DeleteObjects"),
            (("PUT", "/b/a/b.txt"), "PutObject"),
            (("GET", "/b/a/b.txt", "versionId=1"), "GetObject"),
            (("HEAD", "/b/k"), "HeadObject"),
            (("DELETE", "/b/k"), "DeleteObject"),
            (("POST", "/b/k", "uploads"), "CreateMultipartUpload"),
            (("PUT", "/b/k", "partNumber=1&uploadId=x"), "UploadPart"),
            (("POST", "/b/k", "uploadId=x"), "CompleteMultipartUpload"),
            (("GET", "/b/k", "tagging"), "GetObjectTagging"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                self.assertEqual(self.name(*args), expected)
        self.assertEqual(self.name("PUT", "/b/k", HTTP_X_AMZ_COPY_SOURCE="/a/b"), "CopyObject")
        self.assertEqual(self.name("GET", "/", host="b.localhost:5000"), "ListObjects")
        self.assertEqual(self.name("GET", "/k", host="b.s3.us-east-1.amazonaws.com"), "GetObject")
        self.assertEqual(self.name("POST", "/"), "POST /")


class ScenarioValidationTests(unittest.TestCase):
    BASE = {"users": [{"name": "u", "keys": [{"age": "5d"}]}]}
    EVENT = {"user": "u", "ago": "1d", "service": "s3", "event_name": "ListBuckets"}

    def run_harness(self, scenario: dict) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d, "scenario.json")
            path.write_text(json.dumps(scenario))
            return subprocess.run([sys.executable, str(HARNESS), "--scenario", str(path)],
                                  capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    def test_bad_scenarios_exit_2_with_one_line(self) -> None:
        ev = self.EVENT
        cases = [
            ({"events": [{**ev, "user": "nobody"}]}, r"cloudtrail\.events\[0\]\.user: no user 'nobody'"),
            ({"events": [{**ev, "key": 1}]}, r"events\[0\]\.key: .*has 1 key"),
            ({"events": [{**ev, "key": "0"}]}, r"events\[0\]\.key"),
            ({"events": [{**ev, "ago": "91d"}]}, "keeps 90 days"),
            ({"events": [{**ev, "count": 91, "every": "1d"}]}, "keeps 90 days"),
            ({"events": [{**ev, "count": 2}]}, r"every: required"),
            ({"events": [{**ev, "count": 2, "every": "0s"}]}, r"every: must be more than 0s"),
            ({"events": [{**ev, "count": 0}]}, r"count"),
            ({"events": [{**ev, "source_ip": "somewhere"}]}, "source_ip"),
            ({"events": [{**ev, "user_agent": ""}]}, "user_agent"),
            ({"events": [{**ev, "service": "S3"}]}, r"\.service"),
            ({"events": [{**ev, "event_name": "List Buckets"}]}, "event_name"),
            ({"events": [{**ev, "service": "sts", "region": "eu-west-1"}]}, "records sts events in us-east-1"),
            ({"events": [{**ev, "when": "1d"}]}, "unknown field"),
            ({"events": [{**ev, "resources": [{"type": "S3 bucket", "name": "b"}]}]}, r"events\[0\]\.resources\[0\]\.type"),
            ({"events": [{k: v for k, v in ev.items() if k != "ago"}]}, r"ago: required"),
            ({"events": {}}, r"cloudtrail\.events: expected a list"),
            ({"enabled": "no"}, r"cloudtrail\.enabled"),
            ({"anchor": "later"}, r"cloudtrail\.anchor"),
            ({"trail": "x"}, "unknown field"),
            ({"events": [{**ev, "count": 60000, "every": "1m"}, {**ev, "count": 60000, "every": "1m"}]},
             "at most 100000"),
        ]
        for block, pattern in cases:
            with self.subTest(block=block):
                run = self.run_harness({**self.BASE, "cloudtrail": block})
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertRegex(run.stderr, rf"^harness: bad scenario .*{pattern}")
                self.assertEqual(len(run.stderr.splitlines()), 1, run.stderr)

    def test_bad_account_blocks_name_the_account(self) -> None:
        cases = [
            ({"events": [{**self.EVENT, "user": "u"}]}, rf"accounts\[0\] \({MEMBER}\)\.cloudtrail\.events\[0\]\.user"),
            ({"anchor": "as_of"}, "unknown field"),  # the anchor is the scenario's
        ]
        for block, pattern in cases:
            with self.subTest(block=block):
                run = self.run_harness({"accounts": [{"id": MEMBER, "users": [{"name": "m", "keys": [{"age": "1d"}]}],
                                                      "cloudtrail": block}]})
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertRegex(run.stderr, rf"^harness: bad scenario .*{pattern}")


if __name__ == "__main__":
    unittest.main()
