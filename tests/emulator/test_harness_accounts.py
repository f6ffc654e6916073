"""Tests of the harness's several accounts: scenario accounts, Organizations,
AssumeRole, per-account and timed faults, per-account truth and endpoints
(stdlib unittest + boto3).

Run from the repository root:

    python -m unittest discover -s tests/emulator -p 'test_*.py' -v

Each test class starts its own harness (harness.py as a subprocess on
127.0.0.1, port 0, see RunningHarness) and stops it by its process handle.
Nothing depends on the machine's speed: waits are bounded polls, and the one
timed fault is checked after a sleep longer than its lifetime.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
import urllib.error
import urllib.request
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_harness_securityhub import RunningHarness  # noqa: E402  (the subprocess wrapper)

HARNESS = HERE / "harness.py"
MGMT = "123456789012"
PROD, DEV, NOROLE, EXT = "111111111111", "222222222222", "333333333333", "444444444444"
ROLE = "OrganizationAccountAccessRole"
EXTERNAL_ID = "ext-secret-1"


def role_arn(account: str, name: str = ROLE) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


SCENARIO = {
    "as_of": "2026-11-28T12:00:00Z",
    "users": [
        {"name": "admin", "keys": [{"age": "10d"}]},
        {"name": "shared", "keys": [{"age": "200d"}]},
    ],
    "organization": {"role_name": ROLE},
    "accounts": [
        {"id": PROD, "name": "prod",
         "users": [{"name": "p-old", "keys": [{"age": "200d"}]},
                   {"name": "p-warn", "keys": [{"age": "80d"}]},
                   {"name": "shared", "keys": [{"age": "5d"}]}],
         "bulk": {"users": 3, "seed": 3, "prefix": "svc-"}},
        {"id": DEV, "name": "dev", "status": "SUSPENDED", "users": [{"name": "d-old", "keys": [{"age": "100d"}]}]},
        {"id": NOROLE, "name": "no-role", "role": False, "users": [{"name": "n1", "keys": [{"age": "1d"}]}]},
        {"id": EXT, "name": "external", "external_id": EXTERNAL_ID, "email": "ext@example.com",
         "users": [{"name": "e1", "keys": [{"age": "95d"}, {"status": "Inactive", "age": "300d"}]}]},
    ],
}
ALL_ACCOUNTS = [MGMT, PROD, DEV, NOROLE, EXT]


def client(h: RunningHarness, service: str, creds: dict | None = None, attempts: int = 1,
           validate: bool = True) -> object:
    """A boto3 client; `creds` are AssumeRole's Credentials (default: the
    static "testing" credentials, which act in the management account)."""
    creds = creds or {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
    return boto3.client(
        service, endpoint_url=h.endpoint, region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"},
                      parameter_validation=validate),
    )


def assume(h: RunningHarness, account: str, **kwargs: str) -> dict:
    sts = client(h, "sts")
    return sts.assume_role(RoleArn=role_arn(account), RoleSessionName="rekey-test", **kwargs)["Credentials"]


class AccountsTestCase(unittest.TestCase):
    """One harness (with a truth file) for the whole class."""

    scenario: dict = SCENARIO
    h: RunningHarness

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory(prefix="rekey-accounts-test-")
        cls.truth_path = Path(cls.tmp.name, "truth.json")
        cls.h = RunningHarness(cls.scenario, args=("--truth", str(cls.truth_path)))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.h.stop()
        cls.tmp.cleanup()

    def assertAwsError(self, ctx: unittest.case._AssertRaisesContext, code: str, status: int) -> dict:
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status, err)
        return err

    def user_names(self, creds: dict | None) -> set[str]:
        iam = client(self.h, "iam", creds)
        return {u["UserName"] for page in iam.get_paginator("list_users").paginate() for u in page["Users"]}


class OrganizationsTests(AccountsTestCase):
    def test_list_accounts_pages_of_two(self) -> None:
        org = client(self.h, "organizations")
        pages, token = [], None
        while True:
            page = org.list_accounts(MaxResults=2, **({"NextToken": token} if token else {}))
            pages.append(page["Accounts"])
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual([len(p) for p in pages], [2, 2, 1])
        accounts = [a for p in pages for a in p]
        self.assertEqual([a["Id"] for a in accounts], ALL_ACCOUNTS)
        by_id = {a["Id"]: a for a in accounts}
        self.assertEqual(by_id[DEV]["Status"], "SUSPENDED")
        self.assertEqual(by_id[DEV]["State"], "SUSPENDED")
        self.assertEqual(by_id[PROD]["Status"], "ACTIVE")
        self.assertEqual(by_id[PROD]["Name"], "prod")
        self.assertEqual(by_id[PROD]["Email"], f"aws+{PROD}@example.com")
        self.assertEqual(by_id[EXT]["Email"], "ext@example.com")
        self.assertEqual(by_id[PROD]["Arn"], f"arn:aws:organizations::{MGMT}:account/o-rekeyexample/{PROD}")
        self.assertEqual(by_id[PROD]["JoinedMethod"], "CREATED")
        self.assertEqual(by_id[MGMT]["Name"], "management")
        self.assertIn("JoinedTimestamp", by_id[MGMT])

    def test_default_page_is_twenty_and_the_paginator_works(self) -> None:
        org = client(self.h, "organizations")
        page = org.list_accounts()
        self.assertEqual(len(page["Accounts"]), 5)
        self.assertNotIn("NextToken", page)
        ids = [a["Id"] for p in org.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 3})
               for a in p["Accounts"]]
        self.assertEqual(ids, ALL_ACCOUNTS)

    def test_bad_token_and_max_results(self) -> None:
        org = client(self.h, "organizations", validate=False)
        for token in ("bogus", "cmVrZXktYWNjb3VudHM6OTk=", "cmVrZXktYWNjb3VudHM6LTE="):  # junk, offset 99, -1
            with self.subTest(token=token), self.assertRaises(ClientError) as ctx:
                org.list_accounts(NextToken=token)
            self.assertAwsError(ctx, "InvalidInputException", 400)
        for n in (0, 21):
            with self.subTest(max_results=n), self.assertRaises(ClientError) as ctx:
                org.list_accounts(MaxResults=n)
            self.assertAwsError(ctx, "InvalidInputException", 400)

    def test_only_the_management_account_lists_accounts(self) -> None:
        member = client(self.h, "organizations", assume(self.h, PROD))
        with self.assertRaises(ClientError) as ctx:
            member.list_accounts()
        self.assertAwsError(ctx, "AccessDeniedException", 400)
        with self.assertRaises(ClientError) as ctx:
            member.describe_account(AccountId=DEV)
        self.assertAwsError(ctx, "AccessDeniedException", 400)
        # Members may describe their organization.
        self.assertEqual(member.describe_organization()["Organization"]["MasterAccountId"], MGMT)

    def test_describe_organization_and_account(self) -> None:
        org = client(self.h, "organizations")
        desc = org.describe_organization()["Organization"]
        self.assertEqual(desc["Id"], "o-rekeyexample")
        self.assertEqual(desc["MasterAccountId"], MGMT)
        self.assertEqual(org.describe_account(AccountId=DEV)["Account"]["Status"], "SUSPENDED")
        with self.assertRaises(ClientError) as ctx:
            org.describe_account(AccountId="999999999999")
        self.assertAwsError(ctx, "AccountNotFoundException", 400)

    def test_other_organizations_calls_are_refused_by_name(self) -> None:
        with self.assertRaises(ClientError) as ctx:
            client(self.h, "organizations").list_roots()
        err = self.assertAwsError(ctx, "InvalidInputException", 400)
        self.assertIn("harness: organizations:ListRoots", err["Error"]["Message"])

    def test_accounts_endpoint(self) -> None:
        view = self.h.ok("GET", "/_rekey/accounts")
        self.assertEqual(view["organization"], "o-rekeyexample")
        self.assertEqual([a["id"] for a in view["accounts"]], ALL_ACCOUNTS)
        by_id = {a["id"]: a for a in view["accounts"]}
        self.assertEqual(by_id[NOROLE]["role_name"], None)
        self.assertEqual(by_id[EXT]["external_id"], EXTERNAL_ID)
        self.assertTrue(by_id[MGMT]["management"])


class AssumeRoleTests(AccountsTestCase):
    def test_member_credentials_act_in_the_member_account(self) -> None:
        creds = assume(self.h, PROD)
        self.assertTrue(creds["AccessKeyId"].startswith("ASIA"))
        ident = client(self.h, "sts", creds).get_caller_identity()
        self.assertEqual(ident["Account"], PROD)
        self.assertEqual(ident["Arn"], f"arn:aws:sts::{PROD}:assumed-role/{ROLE}/rekey-test")
        self.assertEqual(self.user_names(creds), {"p-old", "p-warn", "shared", "svc-00000", "svc-00001", "svc-00002"})
        self.assertEqual(self.user_names(None), {"admin", "shared"})
        roles = client(self.h, "iam", creds).list_roles()["Roles"]
        self.assertEqual([r["RoleName"] for r in roles], [ROLE])
        trust = roles[0]["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        self.assertEqual(trust["Statement"][0]["Principal"], {"AWS": f"arn:aws:iam::{MGMT}:root"})

    def test_member_keys_and_their_account(self) -> None:
        """An access key of a member account's user acts in that account."""
        iam = client(self.h, "iam", assume(self.h, EXT, ExternalId=EXTERNAL_ID))
        iam.create_user(UserName="e-temp")
        self.addCleanup(iam.delete_user, UserName="e-temp")
        key = iam.create_access_key(UserName="e-temp")["AccessKey"]
        self.addCleanup(iam.delete_access_key, UserName="e-temp", AccessKeyId=key["AccessKeyId"])
        user_creds = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
        ident = client(self.h, "sts", user_creds).get_caller_identity()
        self.assertEqual((ident["Account"], ident["Arn"]), (EXT, f"arn:aws:iam::{EXT}:user/e-temp"))
        keys = self.h.ok("GET", f"/_rekey/keys?user=e-temp&account={EXT}")["keys"]
        self.assertEqual([k["access_key_id"] for k in keys], [key["AccessKeyId"]])
        status, _ = self.h.control("GET", "/_rekey/keys?user=e-temp")  # not in the default account
        self.assertEqual(status, 404)
        # A member's user may not assume the roles (they trust the management account).
        with self.assertRaises(ClientError) as ctx:
            client(self.h, "sts", user_creds).assume_role(RoleArn=role_arn(PROD), RoleSessionName="x1")
        self.assertAwsError(ctx, "AccessDenied", 403)

    def test_denied_without_role(self) -> None:
        with self.assertRaises(ClientError) as ctx:
            assume(self.h, NOROLE)
        err = self.assertAwsError(ctx, "AccessDenied", 403)
        self.assertEqual(err["Error"]["Type"], "Sender")
        self.assertRegex(err["Error"]["Message"],
                         rf"^User: arn:aws:\w+::{MGMT}:user/\S+ is not authorized to perform: sts:AssumeRole "
                         rf"on resource: arn:aws:iam::{NOROLE}:role/{ROLE}$")
        with self.assertRaises(ClientError) as ctx:  # a role name the account does not have
            client(self.h, "sts").assume_role(RoleArn=role_arn(PROD, "OtherRole"), RoleSessionName="x1")
        self.assertAwsError(ctx, "AccessDenied", 403)

    def test_external_id(self) -> None:
        for kwargs in ({}, {"ExternalId": "wrong-id"}):
            with self.subTest(**kwargs), self.assertRaises(ClientError) as ctx:
                assume(self.h, EXT, **kwargs)
            self.assertAwsError(ctx, "AccessDenied", 403)
        creds = assume(self.h, EXT, ExternalId=EXTERNAL_ID)
        self.assertEqual(client(self.h, "sts", creds).get_caller_identity()["Account"], EXT)
        self.assertEqual(self.user_names(creds), {"e1"})
        # An ExternalId the role does not require is ignored, as in AWS.
        self.assertEqual(client(self.h, "sts", assume(self.h, PROD, ExternalId="unneeded"))
                         .get_caller_identity()["Account"], PROD)

    def test_suspended_account_cannot_be_entered(self) -> None:
        with self.assertRaises(ClientError) as ctx:
            assume(self.h, DEV)
        self.assertAwsError(ctx, "AccessDenied", 403)

    def test_roles_in_other_accounts_go_to_moto(self) -> None:
        ident = client(self.h, "sts", assume(self.h, "555555555555")).get_caller_identity()
        self.assertEqual(ident["Account"], "555555555555")


class TruthAndEndpointTests(AccountsTestCase):
    def test_truth_file_has_every_account(self) -> None:
        truth = json.loads(self.truth_path.read_text())
        self.assertEqual(sorted(truth["accounts"]), sorted(ALL_ACCOUNTS))
        top = {k: v for k, v in truth.items() if k != "accounts"}
        self.assertEqual(truth["accounts"][MGMT], top)  # the top level is the default account, as before
        self.assertEqual(top["summary"]["users"], 2)
        self.assertEqual(top["summary"]["failed"], 1)  # shared, 200 days
        prod = truth["accounts"][PROD]
        self.assertEqual(prod["account_id"], PROD)
        self.assertEqual(prod["summary"]["users"], 6)
        self.assertTrue(all(k["user_arn"].startswith(f"arn:aws:iam::{PROD}:user/") for k in prod["keys"]))
        by_user = {k["user_name"]: k["result"] for k in prod["keys"]}
        self.assertEqual((by_user["p-old"], by_user["p-warn"], by_user["shared"]), ("FAILED", "WARNING", "PASSED"))
        ext = truth["accounts"][EXT]
        self.assertEqual((ext["summary"]["keys"], ext["summary"]["failed"], ext["summary"]["passed"]), (2, 1, 1))
        self.assertEqual(truth["accounts"][DEV]["summary"]["failed"], 1)  # suspended accounts have a truth too

    def test_truth_endpoint_per_account(self) -> None:
        truth = json.loads(self.truth_path.read_text())
        for account in ALL_ACCOUNTS:
            with self.subTest(account=account):
                self.assertEqual(self.h.ok("GET", f"/_rekey/truth?account={account}"), truth["accounts"][account])
        status, body = self.h.control("GET", "/_rekey/truth?account=12345")
        self.assertEqual((status, list(body)), (400, ["error"]))

    def test_keys_and_users_endpoints_per_account(self) -> None:
        keys = self.h.ok("GET", f"/_rekey/keys?user=shared&account={PROD}")["keys"]
        self.assertEqual([k["created_at"] for k in keys], ["2026-11-23T12:00:00Z"])
        mgmt_keys = self.h.ok("GET", "/_rekey/keys?user=shared")["keys"]
        self.assertEqual([k["created_at"] for k in mgmt_keys], ["2026-05-12T12:00:00Z"])
        status, _ = self.h.control("GET", f"/_rekey/keys?user=p-old&account={MGMT}")
        self.assertEqual(status, 404)
        # POST /_rekey/keys/<id> finds the key in whichever account has it.
        key_id = keys[0]["access_key_id"]
        updated = self.h.ok("POST", f"/_rekey/keys/{key_id}", {"created_at": "2026-01-01T00:00:00Z"})
        self.assertEqual(updated["created_at"], "2026-01-01T00:00:00Z")
        truth = self.h.ok("GET", f"/_rekey/truth?account={PROD}")
        self.assertEqual({k["user_name"]: k["result"] for k in truth["keys"]}["shared"], "FAILED")
        self.h.ok("POST", f"/_rekey/keys/{key_id}", {"created_at": "2026-11-23T12:00:00Z"})
        user = self.h.ok("POST", f"/_rekey/users/{quote('p-old')}?account={PROD}", {"created_at": "2025-01-01T00:00:00Z"})
        self.assertEqual(user["user_arn"], f"arn:aws:iam::{PROD}:user/p-old")

    def test_securityhub_and_credential_report_per_account(self) -> None:
        findings = self.h.ok("GET", f"/_rekey/securityhub/findings?account={PROD}")["findings"]
        failed = {f["user_name"] for f in findings if f["Compliance"]["Status"] == "FAILED"}
        self.assertIn("p-old", failed)
        self.assertNotIn("shared", failed)
        self.assertTrue(all(f["AwsAccountId"] == PROD for f in findings))
        creds = assume(self.h, PROD)
        iam = client(self.h, "iam", creds)
        iam.generate_credential_report()
        report = iam.get_credential_report()["Content"].decode()
        self.assertIn(f"arn:aws:iam::{PROD}:user/p-old", report)
        self.assertNotIn("admin", report)
        hub = client(self.h, "securityhub", creds)
        got = hub.get_findings(Filters={"ComplianceStatus": [{"Value": "FAILED", "Comparison": "EQUALS"}]})
        self.assertTrue(got["Findings"])
        self.assertTrue(all(f["AwsAccountId"] == PROD for f in got["Findings"]))

    def test_report_root_and_sns_endpoints_per_account(self) -> None:
        creds = assume(self.h, EXT, ExternalId=EXTERNAL_ID)
        iam = client(self.h, "iam", creds)
        self.h.ok("POST", f"/_rekey/root?account={EXT}", {"access_key_active": True})
        self.h.ok("POST", f"/_rekey/credential-report/override?account={EXT}",
                  {"user": "e1", "column": "access_key_1_last_rotated", "value": "garbage"})
        self.h.ok("POST", f"/_rekey/credential-report/expire?account={EXT}")
        iam.generate_credential_report()
        rows = iam.get_credential_report()["Content"].decode().splitlines()
        self.assertTrue(rows[1].startswith(f"<root_account>,arn:aws:iam::{EXT}:root,"))
        self.assertEqual(rows[1].split(",")[8], "true")  # access_key_1_active of the root row
        self.assertIn("garbage", next(r for r in rows if r.startswith("e1,")))
        client(self.h, "iam").generate_credential_report()  # the default account is untouched
        mgmt_rows = client(self.h, "iam").get_credential_report()["Content"].decode().splitlines()
        self.assertEqual(mgmt_rows[1].split(",")[8], "false")
        self.assertNotIn("garbage", "\n".join(mgmt_rows))

        arn = self.h.ok("POST", f"/_rekey/sns/topics?account={EXT}", {"name": "owners"})["arn"]
        self.assertEqual(arn, f"arn:aws:sns:us-east-1:{EXT}:owners")
        client(self.h, "sns", creds).publish(TopicArn=arn, Message="rotate")
        messages = self.h.ok("GET", f"/_rekey/sns/messages?topic=owners&account={EXT}")["messages"]
        self.assertEqual([m["Message"] for m in messages], ["rotate"])
        self.assertEqual(self.h.control("GET", "/_rekey/sns/messages?topic=owners")[0], 404)

    def test_calls_by_account(self) -> None:
        self.h.ok("POST", "/_rekey/calls/reset")
        creds = assume(self.h, PROD)
        client(self.h, "iam", creds).list_users()
        client(self.h, "iam").list_users()
        calls = self.h.ok("GET", "/_rekey/calls")
        self.assertEqual(calls["by_account"], {MGMT: 2, PROD: 1})
        self.assertEqual(calls["by_operation"], {"iam:ListUsers": 2, "sts:AssumeRole": 1})
        prod = self.h.ok("GET", f"/_rekey/calls?account={PROD}")
        self.assertEqual(prod, {"account": PROD, "total": 1, "by_operation": {"iam:ListUsers": 1}})
        self.assertEqual(self.h.ok("GET", f"/_rekey/calls?account={DEV}")["total"], 0)


class FaultTests(AccountsTestCase):
    def tearDown(self) -> None:
        self.h.ok("DELETE", "/_rekey/faults")

    def test_account_fault_hits_only_that_account(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:*", "code": "Throttling", "status": 400,
                                             "message": "Rate exceeded", "count": 5, "account": PROD})
        prod = client(self.h, "iam", assume(self.h, PROD))
        ext = client(self.h, "iam", assume(self.h, EXT, ExternalId=EXTERNAL_ID))
        self.assertEqual({u["UserName"] for u in ext.list_users()["Users"]}, {"e1"})
        client(self.h, "iam").list_users()
        with self.assertRaises(ClientError) as ctx:
            prod.list_users()
        err = self.assertAwsError(ctx, "Throttling", 400)
        self.assertEqual((err["Error"]["Type"], err["Error"]["Message"]), ("Sender", "Rate exceeded"))
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"][0]["remaining"], 4)

    def test_sdk_classifies_the_fault_as_throttling_and_retries(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:ListUsers", "code": "Throttling",
                                             "message": "Rate exceeded", "count": 2, "account": PROD})
        self.h.ok("POST", "/_rekey/calls/reset")
        # botocore's standard retry mode retries throttling errors (and backs off).
        prod = client(self.h, "iam", assume(self.h, PROD), attempts=3)
        self.assertIn("p-old", {u["UserName"] for u in prod.list_users()["Users"]})
        self.assertEqual(self.h.ok("GET", f"/_rekey/calls?account={PROD}")["by_operation"], {"iam:ListUsers": 3})
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"], [])

    def test_timed_fault(self) -> None:
        listed = self.h.ok("POST", "/_rekey/faults", {"operation": "organizations:ListAccounts",
                                                      "code": "TooManyRequestsException", "seconds": 3600})
        self.assertEqual(listed["faults"][0]["remaining"], None)
        self.assertGreater(listed["faults"][0]["seconds_left"], 3000)
        org = client(self.h, "organizations")
        for _ in range(3):  # a timed fault is not used up
            with self.assertRaises(ClientError) as ctx:
                org.list_accounts()
            self.assertAwsError(ctx, "TooManyRequestsException", 400)
        self.assertEqual(self.h.ok("DELETE", "/_rekey/faults"), {"cleared": 1})
        self.assertEqual(len(org.list_accounts()["Accounts"]), 5)

    def test_timed_fault_ends(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "*", "code": "Throttling", "seconds": 0.2})
        time.sleep(0.5)  # longer than the fault's lifetime on any machine: monotonic time
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"], [])
        client(self.h, "iam").list_users()

    def test_bad_faults(self) -> None:
        base = {"operation": "iam:*", "code": "Throttling"}
        for extra in ({"seconds": 0}, {"seconds": -1}, {"seconds": "5"}, {"seconds": True},
                      {"seconds": 86401}, {"count": 1, "seconds": 5}, {"count": 0},
                      {"account": "1234"}, {"account": 111111111111}, {"acount": PROD}):
            with self.subTest(extra=extra):
                status, body = self.h.control("POST", "/_rekey/faults", {**base, **extra})
                self.assertEqual((status, list(body)), (400, ["error"]))
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"], [])


# What botocore raises when the server closes the connection unanswered.
CLOSED = (ConnectionClosedError, EndpointConnectionError)


class FaultKindTests(AccountsTestCase):
    """Faults that are not AWS errors: a late answer, a dropped connection,
    a reply lost after the request was served."""

    def tearDown(self) -> None:
        self.h.ok("DELETE", "/_rekey/faults")

    def keys_of(self, user: str) -> list[str]:
        return [k["access_key_id"] for k in self.h.ok("GET", f"/_rekey/keys?user={user}")["keys"]]

    def test_a_dropped_connection_is_not_served(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:CreateAccessKey", "kind": "drop"})
        before = self.keys_of("admin")
        with self.assertRaises(CLOSED):
            client(self.h, "iam").create_access_key(UserName="admin")
        self.assertEqual(self.keys_of("admin"), before)
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"], [])

    def test_a_lost_reply_was_served(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:CreateAccessKey", "kind": "lost"})
        before = self.keys_of("admin")
        with self.assertRaises(CLOSED):
            client(self.h, "iam").create_access_key(UserName="admin")
        after = self.keys_of("admin")
        self.assertEqual(len(after), len(before) + 1, "the key exists; only its reply was lost")
        client(self.h, "iam").delete_access_key(UserName="admin", AccessKeyId=(set(after) - set(before)).pop())

    def test_a_slow_answer_comes_late_and_a_client_that_gave_up_lost_it(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:ListUsers", "kind": "slow", "delay": 1.5})
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"][0]["delay"], 1.5)
        impatient = boto3.client("iam", endpoint_url=self.h.endpoint, region_name="us-east-1",
                                 aws_access_key_id="testing", aws_secret_access_key="testing",
                                 config=Config(read_timeout=0.3, retries={"total_max_attempts": 1}))
        with self.assertRaises(ReadTimeoutError):
            impatient.list_users()
        started = time.monotonic()
        client(self.h, "iam").list_users()  # the fault is used up: on time
        self.assertLess(time.monotonic() - started, 1.5)

    def test_a_garbled_answer_is_half_a_body_after_the_request_was_served(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:CreateAccessKey", "kind": "garbled"})
        before = self.keys_of("admin")
        with self.assertRaises(Exception) as ctx:
            client(self.h, "iam").create_access_key(UserName="admin")
        self.assertNotIsInstance(ctx.exception, ClientError, "not an AWS error: an unreadable answer")
        after = self.keys_of("admin")
        self.assertEqual(len(after), len(before) + 1)
        client(self.h, "iam").delete_access_key(UserName="admin", AccessKeyId=(set(after) - set(before)).pop())

    def test_an_html_error_page_comes_unserved_with_its_status(self) -> None:
        self.h.ok("POST", "/_rekey/faults", {"operation": "iam:ListUsers", "kind": "html", "status": 502})
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"][0]["status"], 502)
        request = urllib.request.Request(self.h.endpoint + "/", data=b"Action=ListUsers&Version=2010-05-08", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x"})
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(request)
        self.assertEqual(ctx.exception.code, 502)
        self.assertEqual(ctx.exception.headers["Content-Type"], "text/html; charset=utf-8")
        page = ctx.exception.read().decode()
        self.assertIn("<title>502 Bad Gateway</title>", page)
        self.assertNotIn("</html>", page, "like a proxy's page, not a whole document")

    def test_empty_pages_with_a_marker_lose_nothing(self) -> None:
        iam = client(self.h, "iam")
        everyone = [u["UserName"] for u in iam.list_users()["Users"]]
        self.h.ok("POST", "/_rekey/iam/empty-pages", {"count": 3})
        pages = list(iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 1}))
        self.assertEqual([len(p["Users"]) for p in pages[:3]], [0, 0, 0])
        self.assertTrue(all(p["IsTruncated"] for p in pages[:3]))
        self.assertEqual([u["UserName"] for p in pages for u in p["Users"]], everyone)
        for body in ({"count": -1}, {"count": 1001}, {"count": "1"}, {}, {"count": 1, "x": 1}):
            with self.subTest(body=body):
                self.assertEqual(self.h.control("POST", "/_rekey/iam/empty-pages", body)[0], 400)

    def test_bad_fault_kinds(self) -> None:
        for body in ({"operation": "iam:*", "kind": "late"}, {"operation": "iam:*", "kind": "slow"},
                     {"operation": "iam:*", "kind": "slow", "delay": 0}, {"operation": "iam:*", "kind": "slow", "delay": 301},
                     {"operation": "iam:*", "kind": "slow", "delay": "1"}, {"operation": "iam:*", "kind": "drop", "delay": 1},
                     {"operation": "iam:*", "kind": "drop", "code": "Throttling"}, {"operation": "iam:*"}):
            with self.subTest(body=body):
                status, answer = self.h.control("POST", "/_rekey/faults", body)
                self.assertEqual((status, list(answer)), (400, ["error"]))
        self.assertEqual(self.h.ok("GET", "/_rekey/faults")["faults"], [])


class MutationTests(AccountsTestCase):
    """Changes at runtime: an account suspended, a role deleted."""

    def test_suspending_an_account(self) -> None:
        client(self.h, "sts", assume(self.h, PROD))
        view = self.h.ok("POST", f"/_rekey/accounts/{PROD}", {"status": "SUSPENDED"})
        self.assertEqual({a["id"]: a["status"] for a in view["accounts"]}[PROD], "SUSPENDED")
        org = client(self.h, "organizations")
        self.assertEqual({a["Id"]: a["Status"] for a in org.list_accounts()["Accounts"]}[PROD], "SUSPENDED")
        with self.assertRaises(ClientError) as ctx:
            assume(self.h, PROD)
        self.assertAwsError(ctx, "AccessDenied", 403)
        self.h.ok("POST", f"/_rekey/accounts/{PROD}", {"status": "ACTIVE"})
        assume(self.h, PROD)

    def test_deleting_the_role_denies_assume_role(self) -> None:
        iam = client(self.h, "iam", assume(self.h, EXT, ExternalId=EXTERNAL_ID))
        iam.delete_role(RoleName=ROLE)
        with self.assertRaises(ClientError) as ctx:
            assume(self.h, EXT, ExternalId=EXTERNAL_ID)
        self.assertAwsError(ctx, "AccessDenied", 403)

    def test_bad_account_updates(self) -> None:
        for path, body, want in ((f"/_rekey/accounts/{PROD}", {"status": "CLOSED"}, 400),
                                 (f"/_rekey/accounts/{PROD}", {"name": "x"}, 400),
                                 (f"/_rekey/accounts/{PROD}", {}, 400),
                                 (f"/_rekey/accounts/{PROD}", {"external_id": "x"}, 400),
                                 (f"/_rekey/accounts/{MGMT}", {"status": "SUSPENDED"}, 404),
                                 ("/_rekey/accounts/999999999999", {"status": "SUSPENDED"}, 404),
                                 ("/_rekey/accounts/abc", {"status": "SUSPENDED"}, 400)):
            with self.subTest(path=path, body=body):
                status, payload = self.h.control("POST", path, body)
                self.assertEqual((status, list(payload)), (want, ["error"]))


class NoOrganizationTests(AccountsTestCase):
    """Accounts without an "organization": roles and users, but no Organizations."""

    scenario = {"as_of": "2026-11-28T12:00:00Z",
                "accounts": [{"id": PROD, "role": "AuditRole", "users": [{"name": "p1"}]}]}

    def test_organizations_not_in_use(self) -> None:
        org = client(self.h, "organizations")
        for call in (org.list_accounts, org.describe_organization, org.list_roots):
            with self.subTest(call=call.__name__), self.assertRaises(ClientError) as ctx:
                call()
            self.assertAwsError(ctx, "AWSOrganizationsNotInUseException", 400)

    def test_custom_role_name(self) -> None:
        sts = client(self.h, "sts")
        creds = sts.assume_role(RoleArn=role_arn(PROD, "AuditRole"), RoleSessionName="audit")["Credentials"]
        self.assertEqual(self.user_names(creds), {"p1"})
        with self.assertRaises(ClientError) as ctx:
            assume(self.h, PROD)
        self.assertAwsError(ctx, "AccessDenied", 403)


class AccountsBulkTests(AccountsTestCase):
    scenario = {"as_of": "2026-11-28T12:00:00Z", "organization": {},
                "accounts": [{"id": "100000000001", "name": "first"}],
                "accounts_bulk": {"count": 3, "first_id": 100000000002, "users": 20, "seed": 1}}

    def test_generated_accounts(self) -> None:
        ids = ["100000000002", "100000000003", "100000000004"]
        accounts = client(self.h, "organizations").list_accounts()["Accounts"]
        self.assertEqual([a["Id"] for a in accounts], [MGMT, "100000000001", *ids])
        self.assertEqual([a["Name"] for a in accounts[2:]], ["bulk-account-000", "bulk-account-001",
                                                             "bulk-account-002"])
        truth = json.loads(self.truth_path.read_text())
        self.assertEqual([truth["accounts"][i]["summary"]["users"] for i in ids], [20, 20, 20])
        # Account i gets the users of seed + i: different accounts, different users.
        self.assertNotEqual(truth["accounts"][ids[0]]["summary"], truth["accounts"][ids[1]]["summary"])
        creds = assume(self.h, ids[2])
        self.assertEqual(len(self.user_names(creds)), 20)


class ScenarioValidationTests(unittest.TestCase):
    BASE = {"as_of": "2026-11-28T12:00:00Z", "accounts": [{"id": PROD, "users": [{"name": "a"}]}]}

    def run_harness(self, scenario: dict) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d, "scenario.json")
            path.write_text(json.dumps(scenario))
            return subprocess.run([sys.executable, str(HARNESS), "--scenario", str(path)],
                                  capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    def test_shipped_scenarios_load(self) -> None:
        import scenario

        demo = scenario.load_scenario_file(str(HERE / "scenarios" / "org-demo.json"), None)
        self.assertEqual([(a.id, a.status, a.role_name is not None, a.external_id is not None)
                          for a in demo.accounts],
                         [("111111111111", "ACTIVE", True, False), ("222222222222", "ACTIVE", True, False),
                          ("333333333333", "SUSPENDED", True, False), ("444444444444", "ACTIVE", True, True),
                          ("555555555555", "ACTIVE", False, False)])
        bench = scenario.load_scenario_file(str(HERE / "scenarios" / "org-50x200.json"), None)
        self.assertEqual([a.id for a in bench.accounts], [f"{100000000001 + i:012d}" for i in range(50)])
        self.assertEqual(sum(len(a.users) for a in bench.accounts), 10000)
        for name in ("demo.json", "mixed.json", "bulk-2000.json"):  # no accounts, as before
            with self.subTest(name=name):
                old = scenario.load_scenario_file(str(HERE / "scenarios" / name), None)
                self.assertEqual((old.organization, old.accounts), (None, []))

    def test_bad_scenarios_exit_2_with_one_line(self) -> None:
        acct = {"id": DEV}
        cases = [
            ({"accounts": [acct, acct]}, "duplicate account id 222222222222"),
            ({"accounts": [{"id": MGMT}]}, "default \\(management\\) account"),
            ({"accounts": [{"id": "1234"}]}, "accounts\\[0\\]\\.id"),
            ({"accounts": [{"id": 222222222222}]}, "accounts\\[0\\]\\.id"),
            ({"accounts": [{"id": DEV, "status": "CLOSED"}]}, "status"),
            ({"accounts": [{"id": DEV, "role": False, "external_id": "abc"}]}, "external_id"),
            ({"accounts": [{"id": DEV, "external_id": "a"}]}, "external_id"),
            ({"accounts": [{"id": DEV, "role": "bad role"}]}, "role"),
            ({"accounts": [{"id": DEV, "region": "x"}]}, "unknown field"),
            ({"accounts": [{"id": DEV, "users": [{"name": "a"}, {"name": "A"}]}]},
             f"accounts\\[0\\] \\({DEV}\\): duplicate user name"),
            ({"accounts": [{"id": DEV, "users": [{"name": "a", "keys": [{"age": "x"}]}]}]},
             f"accounts\\[0\\] \\({DEV}\\) user 'a'"),
            ({"accounts": [{"id": DEV, "bulk": {"users": -1}}]}, "bulk.users"),
            ({"accounts": "x"}, "scenario.accounts"),
            ({"organization": {"role_name": "a b"}}, "organization.role_name"),
            ({"organization": {"id": "org-1"}}, "organization.id"),
            ({"organization": {"feature_set": "ALL"}}, "unknown field"),
            ({"accounts_bulk": {"count": 2, "first_id": 999999999999}}, "first_id"),
            ({"accounts_bulk": {"count": 2, "first_id": 111111111110}}, "duplicate account id 111111111111"),
            ({"accounts_bulk": {"count": 0, "first_id": 1}}, "count"),
            ({"accounts_bulk": {"count": 1001, "first_id": 1}}, "count"),
            ({"accounts_bulk": {"count": 1000, "first_id": 1, "users": 2000}}, "count \\* users"),
            ({"accounts_bulk": {"count": 1, "first_id": 1, "users": 1, "seed": "1"}}, "seed"),
            ({"accounts_bulk": {"count": 1, "first_id": 1, "accounts": 1}}, "unknown field"),
        ]
        for extra, pattern in cases:
            with self.subTest(extra=extra):
                run = self.run_harness({**self.BASE, **extra})
                self.assertEqual(run.returncode, 2, run.stderr)
                self.assertRegex(run.stderr, rf"^harness: bad scenario .*{pattern}")
                self.assertEqual(len(run.stderr.splitlines()), 1, run.stderr)


if __name__ == "__main__":
    unittest.main()
