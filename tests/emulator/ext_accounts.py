"""The harness side of several accounts: member accounts' users and roles,
the organization, and the calls that cross accounts.

Seeds each scenario account (users, keys, its role and the role's trust
policy), builds the organization that organizations.py serves, answers
every Organizations call itself (organizations_extension; never moto), and
denies sts:AssumeRole into a scenario account the way AWS would
(assume_role_extension). ORGANIZATIONS is replaced once the scenario is
loaded: read it as ``ext_accounts.ORGANIZATIONS`` from other modules.
See README.md ("Several accounts").
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any, Callable

import organizations  # beside this file: Organizations and cross-account roles
from credential_report import ROOT_CREATED
from protocol import (HttpError, RequestInfo, account_param, aws_error, caller_arn, json_answer, json_object_body,
                      query_params, request_account)
from scenario import DEFAULT_ACCOUNT_ID, AccountSpec, Scenario
from seeding import iam_backend, seed

# --------------------------------------------------------------------------
# The scenario's accounts: their users, their roles, and the organization
# (the API itself is in organizations.py)
# --------------------------------------------------------------------------

MANAGEMENT_NAME = "management"
MANAGEMENT_EMAIL = "management@example.com"
ROOT_AGE = timedelta(days=2000)  # the root user's creation, and the management account's joining
MEMBER_AGE = timedelta(days=1000)  # when member accounts joined the organization


def management_account(as_of: datetime) -> organizations.Account:
    return organizations.Account(DEFAULT_ACCOUNT_ID, MANAGEMENT_NAME, MANAGEMENT_EMAIL, "ACTIVE",
                                 "INVITED", as_of - ROOT_AGE)


ORGANIZATIONS = organizations.Organizations(management_account(datetime(2026, 1, 1)), [], None)


def build_organizations(scenario: Scenario) -> organizations.Organizations:
    members = [organizations.Account(a.id, a.name, a.email, a.status, "CREATED", scenario.as_of - MEMBER_AGE,
                                     a.role_name, a.external_id, list(a.ous)) for a in scenario.accounts]
    org_id = scenario.organization.id if scenario.organization else None
    return organizations.Organizations(management_account(scenario.as_of), members, org_id)


def trust_policy(management_id: str, external_id: str | None) -> str:
    """The trust policy of a member's role: the management account may assume it."""
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{management_id}:root"},
                                 "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def create_account_role(account: AccountSpec, management_id: str) -> None:
    iam_backend(account.id).create_role(
        account.role_name, trust_policy(management_id, account.external_id), "/", None,
        "Access from the management account (created by the rekey harness)", [], None)


def set_role_policy(account_id: str, body: dict) -> dict:
    """POST /_rekey/accounts/<id>/role-policy: the member role's only inline
    policy (what an admin of that account would attach), for --iam-auth."""
    document = body.get("document")
    if set(body) != {"document"} or not isinstance(document, dict):
        raise HttpError(400, "body must be {\"document\": POLICY}")
    member = next((m for m in ORGANIZATIONS.view()["accounts"] if m.get("id") == account_id and m.get("role_name")), None)
    if member is None:
        raise HttpError(404, f"account {account_id} has no role in the scenario")
    iam_backend(account_id).put_role_policy(member["role_name"], "rekey", json.dumps(document))
    return {"account": account_id, "role_name": member["role_name"]}


def role_exists(account_id: str, role_arn: str) -> bool:
    """Whether moto's IAM in that account has a role with exactly this ARN."""
    try:
        iam_backend(account_id).get_role_by_arn(role_arn)
    except Exception:  # moto's NotFoundException
        return False
    return True


def seed_accounts(scenario: Scenario) -> None:
    """Users, keys and roles of every scenario account, and its root's creation date."""
    for account in scenario.accounts:
        ROOT_CREATED[account.id] = scenario.as_of - ROOT_AGE
        seed(account.users, account.id)
        if account.role_name is not None:
            create_account_role(account, DEFAULT_ACCOUNT_ID)


def scenario_account_ids(scenario: Scenario) -> list[str]:
    return [DEFAULT_ACCOUNT_ID, *(a.id for a in scenario.accounts)]


# --------------------------------------------------------------------------
# Extensions: every Organizations call, and AssumeRole into a scenario account
# --------------------------------------------------------------------------

ORGANIZATIONS_TARGET_PREFIX = "AWSOrganizationsV20161128."
OrgHandler = Callable[[str, dict], dict]  # (calling account, body) -> response
ORGANIZATIONS_OPERATIONS: dict[str, OrgHandler] = {
    "ListAccounts": lambda caller, body: ORGANIZATIONS.list_accounts(caller, body),
    "DescribeAccount": lambda caller, body: ORGANIZATIONS.describe_account(caller, body),
    "DescribeOrganization": lambda caller, body: ORGANIZATIONS.describe_organization(caller),
    "ListParents": lambda caller, body: ORGANIZATIONS.list_parents(caller, body),
}


def is_organizations(environ: dict, info: RequestInfo) -> bool:
    return info.service == "organizations" or (environ.get("HTTP_X_AMZ_TARGET") or "").startswith(
        ORGANIZATIONS_TARGET_PREFIX)


def org_error(info: RequestInfo, e: organizations.OrgError) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, _ = aws_error(info, e.code, e.message, e.status)
    return status, headers, json.dumps(e.body()).encode()


def org_body(body: bytes) -> dict:
    return json_object_body(body, organizations.invalid_input)


def organizations_extension(_harness: "Harness", environ: dict, info: RequestInfo,
                            body: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Every Organizations call: served from the scenario, never by moto."""
    if not is_organizations(environ, info):
        return None
    caller = request_account(environ, info)
    try:
        handler = ORGANIZATIONS_OPERATIONS.get(info.operation)
        if handler is None:
            if not ORGANIZATIONS.in_org(caller):
                raise organizations.not_in_use()
            raise organizations.invalid_input(
                f"harness: organizations:{info.operation} is not implemented by the emulator")
        return json_answer(info, handler(caller, org_body(body)))
    except organizations.OrgError as e:
        return org_error(info, e)


ROLE_ARN_RE = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\x21-\x7e]*/)?[\w+=,.@-]{1,64}$")


def assume_role_extension(harness: "Harness", environ: dict, info: RequestInfo,
                          body: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """sts:AssumeRole into a scenario account: AccessDenied unless the role
    exists, trusts the caller's account and the ExternalId matches; moto
    answers the allowed ones (and AssumeRole into any other account)."""
    if info.service != "sts" or info.operation != "AssumeRole":
        return None
    params = query_params(environ, body)
    role_arn = params.get("RoleArn", "")
    m = ROLE_ARN_RE.match(role_arn)
    target = ORGANIZATIONS.member(m.group(1)) if m else None
    if target is None:
        return None
    caller = request_account(environ, info)
    denial = ORGANIZATIONS.assume_role_denial(caller, target, params.get("ExternalId"),
                                              lambda: role_exists(target.id, role_arn))
    if denial is None:
        return None
    if harness.verbose:
        print(f"harness: AssumeRole {role_arn} denied: {denial}", file=sys.stderr, flush=True)
    message = (f"User: {caller_arn(info, caller)} is not authorized to perform: sts:AssumeRole "
               f"on resource: {role_arn}")
    return aws_error(info, "AccessDenied", message, 403)


# --------------------------------------------------------------------------
# Control endpoints: /_rekey/accounts
# --------------------------------------------------------------------------


def accounts_control(method: str, parts: list[str], body: dict) -> dict:
    if parts == [] and method == "GET":
        return ORGANIZATIONS.view()
    if len(parts) == 1 and method == "POST":
        return ORGANIZATIONS.update(account_param(parts[0]), body)
    if len(parts) == 2 and parts[1] == "role-policy" and method == "POST":
        return set_role_policy(account_param(parts[0]), body)
    raise HttpError(404, f"no harness endpoint {method} /_rekey/accounts/{'/'.join(parts)}")
