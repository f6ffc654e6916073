"""IAM authorization (--iam-auth): every AWS request checked against the
caller's IAM policies, as AWS would.

The harness authorizes every request itself, moto's served and its own
alike, with moto's IAM classes: moto finds the caller (user or assumed
role) and its policies, and evaluates them. moto's own switch
(INITIAL_NO_AUTH_ACTION_COUNT) stays off: it evaluates nearly every action
against Resource "*", so a statement scoped to a user, a parameter or a
topic would never match, and it answers AccessDenied as XML even to JSON
services. Here each request is evaluated against the ARN AWS would use for
it (request_resources). Signatures are not checked; Condition keys other
than the ones moto knows are not either. See README.md ("IAM authorization").
"""

from __future__ import annotations

import json
import re

from protocol import RequestInfo, aws_error, invalid_credentials_error, query_params
from seeding import iam_backend

ADMIN_USER = "rekey-harness-admin"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}  # AWS allows it to every caller, even with a Deny


def install_iam_wildcards() -> None:
    """IAM's wildcards in moto's policy evaluation: `*` any run, `?` any one
    character, everything else literal (moto turns only `*` into a regex and
    leaves `?` and `.` to regex rules)."""
    from moto.iam.access_control import IAMPolicyStatement

    def match(pattern: str, string: str) -> re.Match[str] | None:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.match(f"^{regex}$", string, re.DOTALL)

    IAMPolicyStatement._match = staticmethod(match)


def create_admin() -> tuple[str, str]:
    """The user whose key the tests' own requests (seeding, the AWS CLI as an
    admin) sign with when authorization is on: every action allowed."""
    backend = iam_backend()
    backend.create_user("us-east-1", ADMIN_USER, path="/")
    backend.put_user_policy(ADMIN_USER, "admin", json.dumps(ADMIN_POLICY))
    key = backend.create_access_key(ADMIN_USER)
    return key.access_key_id, key.secret_access_key


def request_params(environ: dict, info: RequestInfo, body: bytes) -> dict:
    """The request's parameters: the JSON body, or the query string and form."""
    if info.protocol in ("json", "rest-json"):
        try:
            parsed = json.loads(body) if body.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = {}
        return parsed if isinstance(parsed, dict) else {}
    return query_params(environ, body)


def user_arn(account: str, name: str) -> str:
    try:
        return iam_backend(account).get_user(name).arn  # with the user's path
    except Exception:  # moto's NoSuchEntity: the ARN AWS would evaluate
        return f"arn:aws:iam::{account}:user/{name}"


def secret_arn(account: str, region: str, secret_id: str) -> str:
    from moto.secretsmanager.models import secretsmanager_backends

    try:
        return secretsmanager_backends[account][region].secrets[secret_id].arn  # with its random suffix
    except Exception:
        return secret_id if secret_id.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}"


def request_resources(info: RequestInfo, params: dict, account: str) -> list[str]:
    """The resource ARNs AWS authorizes a request against, for the calls
    rekey makes; "*" for calls on no particular resource."""
    region = info.region or "us-east-1"
    service, op = info.service, info.operation
    if service == "iam" and params.get("UserName"):
        return [user_arn(account, params["UserName"])]
    if service == "iam" and params.get("RoleName"):
        return [f"arn:aws:iam::{account}:role/{params['RoleName']}"]
    if service == "ssm" and isinstance(params.get("Name"), str):
        name = params["Name"].split(":", 1)[0]  # a version or label selector (NAME:2) is not in the ARN
        return [f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"]
    if service == "secretsmanager" and isinstance(params.get("SecretId"), str):
        return [secret_arn(account, region, params["SecretId"])]
    if service == "sns" and params.get("TopicArn"):
        return [params["TopicArn"]]
    if service == "sts" and op == "AssumeRole" and params.get("RoleArn"):
        return [params["RoleArn"]]
    if service == "dynamodb" and isinstance(params.get("TableName"), str):
        table = f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}"
        return [f"{table}/index/{params['IndexName']}" if params.get("IndexName") else table]
    if service == "securityhub" and op == "BatchImportFindings":
        findings = params.get("Findings") if isinstance(params.get("Findings"), list) else []
        return sorted({str(f.get("ProductArn")) for f in findings if isinstance(f, dict)}) or ["*"]
    if service == "securityhub":
        return [f"arn:aws:securityhub:{region}:{account}:hub/default"]
    return ["*"]


def access_denied(info: RequestInfo, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """AccessDenied in the service's own shape: query services say
    AccessDenied (403), JSON ones AccessDeniedException."""
    if info.protocol in ("query", "ec2", "s3"):
        return aws_error(info, "AccessDenied", message, 403)
    return aws_error(info, "AccessDeniedException", message, 403 if info.protocol == "rest-json" else 400)


def authorize(environ: dict, info: RequestInfo, body: bytes, account: str
              ) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """None if the caller's policies allow the request, else the error AWS
    would answer (invalid credentials, or AccessDenied naming the action)."""
    from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicy, PermissionResult, create_access_key

    if not info.access_key_id:
        return None
    token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
    try:
        caller = create_access_key(account, "aws", info.access_key_id, {"X-Amz-Security-Token": token} if token else {})
    except CreateAccessKeyFailure:
        return invalid_credentials_error(info)
    action = f"{info.service}:{info.operation}"
    if action in ALWAYS_ALLOWED:
        return None
    policies = caller.collect_policies()
    for resource in request_resources(info, request_params(environ, info, body), account):
        results = [IAMPolicy(p).is_action_permitted(action, resource) for p in policies]
        if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
            return access_denied(info, f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource}")
    return None
