"""Organizations and cross-account roles for the emulator harness.

The harness answers AWS Organizations itself (ListAccounts, DescribeOrganization,
DescribeAccount) from the scenario's accounts, and decides whether an
sts:AssumeRole into one of those accounts is allowed before moto sees it.

This module knows nothing about moto or WSGI, like ``securityhub.py``:
``ext_accounts.py`` tells it which account a request acts in and whether a role
exists, and turns an ``OrgError`` into a protocol-correct AWS error. See
README.md ("Several accounts") for the behaviour.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import paging  # beside this file: page tokens and rate windows

MAX_RESULTS = 20  # Organizations' limit, and its default for ListAccounts
TOKEN_PREFIX = "rekey-accounts:"
STATUSES = ("ACTIVE", "SUSPENDED")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")  # sts:AssumeRole's ExternalId


class OrgError(Exception):
    """An Organizations API error: (status, code, message[, reason]) on the wire."""

    def __init__(self, code: str, message: str, reason: str | None = None, status: int = 400):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason

    def body(self) -> dict:
        out = {"__type": self.code, "Message": self.message}
        if self.reason is not None:
            out["Reason"] = self.reason
        return out


class ControlError(Exception):
    """A bad request to a /_rekey/accounts control endpoint."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def not_in_use() -> OrgError:
    return OrgError("AWSOrganizationsNotInUseException",
                    "Your account is not a member of an organization.")


def access_denied() -> OrgError:
    return OrgError("AccessDeniedException", "You don't have permissions to access this resource.")


def invalid_input(message: str, reason: str | None = None) -> OrgError:
    return OrgError("InvalidInputException", message, reason)


@dataclass
class Account:
    id: str
    name: str
    email: str
    status: str  # ACTIVE | SUSPENDED
    joined_method: str  # CREATED | INVITED
    joined: datetime  # naive UTC
    role_name: str | None = None  # the role the scenario made in the account
    external_id: str | None = None  # AssumeRole into it must pass this
    ous: list[str] = field(default_factory=list)  # the OUs it is in, outermost first


def encode_token(offset: int) -> str:
    return paging.encode_offset_token(TOKEN_PREFIX, offset)


def bad_token() -> OrgError:
    return invalid_input("You specified an invalid value for nextToken.", "INVALID_NEXT_TOKEN")


def decode_token(token: Any) -> int:
    try:
        return paging.decode_offset_token(TOKEN_PREFIX, token)
    except ValueError:
        raise bad_token() from None


def parse_max_results(raw: Any) -> int:
    if raw is None:
        return MAX_RESULTS
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise invalid_input("harness: MaxResults must be an integer")
    if raw < 1:
        raise invalid_input("You provided a value that is below the minimum allowed value of 1 for MaxResults.",
                            "MIN_VALUE_EXCEEDED")
    if raw > MAX_RESULTS:
        raise invalid_input(f"You provided a value that exceeds the maximum allowed value of {MAX_RESULTS} "
                            "for MaxResults.", "MAX_VALUE_EXCEEDED")
    return raw


def check_members(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid_input(f"harness: unknown request member(s) {', '.join(unknown)}")


class Organizations:
    """The management account and the scenario's member accounts.

    `org_id` is None when the scenario has no "organization": the member
    accounts still exist (their users, their roles), but every Organizations
    call answers AWSOrganizationsNotInUseException.
    """

    def __init__(self, management: Account, members: list[Account], org_id: str | None):
        self.management = management
        self.org_id = org_id
        self.members = {a.id: a for a in members}
        self.lock = threading.Lock()

    # -- lookups -------------------------------------------------------------

    def member(self, account_id: str) -> Account | None:
        return self.members.get(account_id)

    def all_accounts(self) -> list[Account]:
        """The management account first, then the members in scenario order."""
        return [self.management, *self.members.values()]

    def in_org(self, account_id: str) -> bool:
        return self.org_id is not None and (account_id == self.management.id or account_id in self.members)

    # -- the API ---------------------------------------------------------------

    def account_doc(self, a: Account) -> dict:
        mgmt = self.management.id
        return {
            "Id": a.id,
            "Arn": f"arn:aws:organizations::{mgmt}:account/{self.org_id}/{a.id}",
            "Email": a.email,
            "Name": a.name,
            "Status": a.status,
            "State": a.status,
            "JoinedMethod": a.joined_method,
            "JoinedTimestamp": a.joined.replace(tzinfo=timezone.utc).timestamp(),
        }

    def require_management(self, caller: str) -> None:
        if not self.in_org(caller):
            raise not_in_use()
        if caller != self.management.id:
            raise access_denied()

    def list_accounts(self, caller: str, body: dict) -> dict:
        self.require_management(caller)
        check_members(body, {"MaxResults", "NextToken"})
        limit = parse_max_results(body.get("MaxResults"))
        start = decode_token(body["NextToken"]) if body.get("NextToken") is not None else 0
        with self.lock:
            accounts = self.all_accounts()
            if start > len(accounts):  # not a token the harness handed out
                raise bad_token()
            page = [self.account_doc(a) for a in accounts[start:start + limit]]
        out: dict[str, Any] = {"Accounts": page}
        if start + limit < len(accounts):
            out["NextToken"] = encode_token(start + limit)
        return out

    def describe_account(self, caller: str, body: dict) -> dict:
        self.require_management(caller)
        check_members(body, {"AccountId"})
        wanted = body.get("AccountId")
        with self.lock:
            found = next((a for a in self.all_accounts() if a.id == wanted), None)
            if found is None:
                raise OrgError("AccountNotFoundException",
                               "You specified an account that doesn't exist.")
            return {"Account": self.account_doc(found)}

    def root_id(self) -> str:
        return "r-" + (self.org_id or "o-none")[2:6]

    def list_parents(self, caller: str, body: dict) -> dict:
        """An account's parent is its innermost OU (else the root); an OU's,
        the OU outside it (else the root). Only the management account asks."""
        self.require_management(caller)
        check_members(body, {"ChildId", "MaxResults", "NextToken"})
        child = body.get("ChildId")
        with self.lock:
            for a in self.all_accounts():
                chain = [self.root_id(), *a.ous]
                if a.id == child:
                    parent = chain[-1]
                    break
                if child in a.ous:
                    parent = chain[chain.index(child) - 1]
                    break
            else:
                raise OrgError("ChildNotFoundException", "We can't find an organizational unit (OU) or AWS account with the ChildId that you specified.")
        kind = "ROOT" if parent.startswith("r-") else "ORGANIZATIONAL_UNIT"
        return {"Parents": [{"Id": parent, "Type": kind}]}

    def describe_organization(self, caller: str) -> dict:
        if not self.in_org(caller):
            raise not_in_use()
        mgmt = self.management
        return {"Organization": {
            "Id": self.org_id,
            "Arn": f"arn:aws:organizations::{mgmt.id}:organization/{self.org_id}",
            "FeatureSet": "ALL",
            "MasterAccountArn": f"arn:aws:organizations::{mgmt.id}:account/{self.org_id}/{mgmt.id}",
            "MasterAccountId": mgmt.id,
            "MasterAccountEmail": mgmt.email,
            "AvailablePolicyTypes": [{"Type": "SERVICE_CONTROL_POLICY", "Status": "ENABLED"}],
        }}

    # -- AssumeRole ----------------------------------------------------------

    def assume_role_denial(self, caller: str, target: Account, external_id: str | None,
                           role_exists: Callable[[], bool]) -> str | None:
        """Why an AssumeRole into a member account is refused, or None if it is allowed.

        The roles the scenario creates trust the management account (and
        require the account's external id, if it has one); a suspended
        account cannot be entered.
        """
        with self.lock:
            if target.status != "ACTIVE":
                return f"account {target.id} is {target.status}"
            if not role_exists():
                return "no such role"
            if caller != self.management.id:
                return f"the role trusts only account {self.management.id}"
            if target.external_id is not None and external_id != target.external_id:
                return "the ExternalId does not match"
        return None

    # -- control endpoint ------------------------------------------------------

    def view(self) -> dict:
        with self.lock:
            return {
                "organization": self.org_id,
                "management_account": self.management.id,
                "accounts": [{"id": a.id, "name": a.name, "email": a.email, "status": a.status,
                              "role_name": a.role_name, "external_id": a.external_id,
                              "management": a is self.management}
                             for a in self.all_accounts()],
            }

    def update(self, account_id: str, body: dict) -> dict:
        """POST /_rekey/accounts/<id>: change a member's status or external id."""
        if not body or set(body) - {"status", "external_id"}:
            raise ControlError(400, "body takes status and/or external_id")
        status = body.get("status")
        if "status" in body and status not in STATUSES:
            raise ControlError(400, "status must be ACTIVE or SUSPENDED")
        ext = body.get("external_id")
        if ext is not None and (not isinstance(ext, str) or not EXTERNAL_ID_RE.match(ext)):
            raise ControlError(400, "external_id must be null or 2-1224 chars of letters, digits and _+=,.@:/-")
        with self.lock:
            target = self.members.get(account_id)
            if target is None:
                raise ControlError(404, f"no member account {account_id} in the scenario")
            if "status" in body:
                target.status = status
            if "external_id" in body:
                target.external_id = ext
        return self.view()
