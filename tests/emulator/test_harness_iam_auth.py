"""Tests of the harness's IAM authorization (`--iam-auth`): the admin key in
the ready file, identity policies evaluated against the ARN of each request
for moto's services and the harness's own (Security Hub, CloudTrail,
Organizations), and AccessDenied in each protocol's shape.

Run from the repository root:

    python -m unittest discover -s tests/emulator -p 'test_*.py' -v

One harness for the class, stopped by its process handle.
"""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_harness_securityhub import RunningHarness  # noqa: E402  (the subprocess wrapper)

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:notices"
SCENARIO = {
    "as_of": "2026-11-28T12:00:00Z",
    "users": [{"name": "app", "keys": [{"age": "100d"}]},
              {"name": "pathed", "path": "/team/a/", "keys": []}],
    "sns_topics": ["notices"],
}


def client(h: RunningHarness, service: str, key: tuple[str, str]) -> object:
    return boto3.client(service, endpoint_url=h.endpoint, region_name="us-east-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


class IamAuthTest(unittest.TestCase):
    h: RunningHarness
    admin: tuple[str, str]
    op: tuple[str, str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.h = RunningHarness(SCENARIO, ("--iam-auth",))
        cls.admin = (cls.h.info["admin_access_key_id"], cls.h.info["admin_secret_access_key"])
        iam = client(cls.h, "iam", cls.admin)
        iam.create_user(UserName="operator")
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        cls.op = (key["AccessKeyId"], key["SecretAccessKey"])
        client(cls.h, "ssm", cls.admin).put_parameter(Name="/app/aws", Value="v", Type="SecureString")
        cls.secret_arn = client(cls.h, "secretsmanager", cls.admin).create_secret(
            Name="app/aws", SecretString="{}")["ARN"]

    @classmethod
    def tearDownClass(cls) -> None:
        cls.h.stop()

    def allow(self, *statements: tuple[list[str], list[str]]) -> None:
        """The operator's only policy: these (actions, resources) allowed."""
        doc = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": a, "Resource": r} for a, r in statements]}
        client(self.h, "iam", self.admin).put_user_policy(
            UserName="operator", PolicyName="rekey", PolicyDocument=json.dumps(doc))

    def denied(self, call, action: str, resource: str, code: str = "AccessDeniedException") -> None:
        with self.assertRaises(ClientError) as e:
            call()
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], code)
        self.assertIn(f"is not authorized to perform: {action} on resource: {resource}", err["Message"])
        self.assertIn(f"arn:aws:iam::{ACCOUNT}:user/operator", err["Message"])

    def test_admin_may_do_anything_and_test_credentials_are_rejected(self) -> None:
        client(self.h, "iam", self.admin).list_users()
        client(self.h, "securityhub", self.admin).get_findings()
        with self.assertRaises(ClientError) as e:
            client(self.h, "iam", ("testing", "testing")).list_users()
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidClientTokenId")

    def test_no_policy_denies_all_but_get_caller_identity(self) -> None:
        self.allow((["s3:ListAllMyBuckets"], ["*"]))  # nothing rekey uses
        self.denied(lambda: client(self.h, "iam", self.op).list_users(), "iam:ListUsers", "*", "AccessDenied")
        arn = client(self.h, "sts", self.op).get_caller_identity()["Arn"]
        self.assertEqual(arn, f"arn:aws:iam::{ACCOUNT}:user/operator")

    def test_statements_scoped_to_the_user_parameter_secret_and_topic(self) -> None:
        self.allow((["iam:CreateAccessKey", "iam:DeleteAccessKey"], ["arn:aws:iam::*:user/app"]),
                   (["ssm:GetParameter"], [f"arn:aws:ssm:*:{ACCOUNT}:parameter/app/aws"]),
                   (["secretsmanager:DescribeSecret"], [f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:app/aws-??????"]),
                   (["sns:Publish"], [TOPIC]))
        iam = client(self.h, "iam", self.op)
        key = iam.create_access_key(UserName="app")["AccessKey"]["AccessKeyId"]
        iam.delete_access_key(UserName="app", AccessKeyId=key)
        self.denied(lambda: iam.create_access_key(UserName="operator"), "iam:CreateAccessKey",
                    f"arn:aws:iam::{ACCOUNT}:user/operator", "AccessDenied")
        # A user's ARN carries its path: user/app does not cover it.
        self.denied(lambda: iam.create_access_key(UserName="pathed"), "iam:CreateAccessKey",
                    f"arn:aws:iam::{ACCOUNT}:user/team/a/pathed", "AccessDenied")
        ssm = client(self.h, "ssm", self.op)
        ssm.get_parameter(Name="/app/aws")
        self.denied(lambda: ssm.put_parameter(Name="/app/aws", Value="w", Type="SecureString", Overwrite=True),
                    "ssm:PutParameter", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/app/aws")
        sm = client(self.h, "secretsmanager", self.op)
        sm.describe_secret(SecretId="app/aws")
        # `?` is one character: app/aws-?????? is not app/aws-prod-AbCdEf.
        other = client(self.h, "secretsmanager", self.admin).create_secret(Name="app/aws-prod", SecretString="{}")
        self.denied(lambda: sm.describe_secret(SecretId="app/aws-prod"), "secretsmanager:DescribeSecret", other["ARN"])
        self.denied(lambda: sm.get_secret_value(SecretId="app/aws"), "secretsmanager:GetSecretValue",
                    self.secret_arn)
        client(self.h, "sns", self.op).publish(TopicArn=TOPIC, Message="hello")
        self.denied(lambda: client(self.h, "iam", self.op).list_users(), "iam:ListUsers", "*", "AccessDenied")

    def test_services_the_harness_serves(self) -> None:
        self.allow((["securityhub:GetFindings"], ["*"]))
        hub = client(self.h, "securityhub", self.op)
        self.assertTrue(hub.get_findings()["Findings"])
        hub_arn = f"arn:aws:securityhub:us-east-1:{ACCOUNT}:hub/default"
        self.denied(lambda: hub.batch_update_findings(
            FindingIdentifiers=[{"Id": "x", "ProductArn": "y"}], Note={"Text": "t", "UpdatedBy": "u"}),
            "securityhub:BatchUpdateFindings", hub_arn)
        self.denied(lambda: client(self.h, "cloudtrail", self.op).lookup_events(), "cloudtrail:LookupEvents", "*")
        self.denied(lambda: client(self.h, "organizations", self.op).list_accounts(),
                    "organizations:ListAccounts", "*")
        self.allow((["cloudtrail:LookupEvents", "organizations:ListAccounts"], ["*"]))
        client(self.h, "cloudtrail", self.op).lookup_events()

    def test_an_explicit_deny_wins(self) -> None:
        doc = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:ListUsers", "Resource": "*"}]}
        client(self.h, "iam", self.admin).put_user_policy(
            UserName="operator", PolicyName="rekey", PolicyDocument=json.dumps(doc))
        client(self.h, "iam", self.op).list_access_keys(UserName="app")
        self.denied(lambda: client(self.h, "iam", self.op).list_users(), "iam:ListUsers", "*", "AccessDenied")


if __name__ == "__main__":
    unittest.main()
