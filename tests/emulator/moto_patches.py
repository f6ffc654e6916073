"""moto fidelity patches: where moto 5.x differs from real IAM (and Secrets
Manager) in ways that matter to rekey. Each one is small and documented in
README.md ("Where moto differs from IAM"); install_moto_fidelity_patches()
applies them all once moto is imported. The credential report's patch is in
credential_report.py, with the report.
"""

from __future__ import annotations

import base64
import threading
from datetime import datetime
from typing import Any

import credential_report  # beside this file: the credential report IAM keeps
import seeding  # beside this file: moto's IAM (seeding.moto_iam, once imported)

EMPTY_PAGES = {"left": 0}  # IAM list pages still to answer empty (with a Marker to the same place)
EMPTY_PAGES_LOCK = threading.Lock()


def install_moto_fidelity_patches() -> None:
    from moto.core.responses import ActionResult
    from moto.iam.exceptions import ValidationError
    from moto.iam.responses import IamResponse

    # 1. ListUsers: moto returns every user in one page and ignores
    #    MaxItems/Marker. Real IAM pages (default 100, max 1000 items).
    def page(self: Any, items: list[Any], kind: str) -> tuple[list[Any], dict[str, Any]]:
        """One IAM-style page of `items` (MaxItems 1..1000, default 100;
        an opaque Marker): the page and its IsTruncated/Marker fields."""
        max_items_raw = self._get_param("MaxItems")
        try:
            max_items = int(max_items_raw) if max_items_raw is not None else 100
        except ValueError:
            raise ValidationError("Invalid MaxItems.") from None
        if not 1 <= max_items <= 1000:
            raise ValidationError(
                f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to satisfy "
                "constraint: Member must have value less than or equal to 1000"
            )
        start = 0
        marker = self._get_param("Marker")
        if marker:
            try:
                decoded = base64.b64decode(marker.encode(), validate=True).decode()
                if not decoded.startswith(f"rekey-{kind}:"):
                    raise ValueError
                start = int(decoded.split(":")[1])
            except Exception:
                raise ValidationError("Invalid Marker.") from None
        with EMPTY_PAGES_LOCK:
            empty = EMPTY_PAGES["left"]
            EMPTY_PAGES["left"] = max(0, empty - 1)
        if empty:
            # IAM may answer fewer items than asked, even none, with more to
            # come; each marker differs (clients stop on a repeated one).
            return [], {"IsTruncated": True,
                        "Marker": base64.b64encode(f"rekey-{kind}:{start}:empty{empty}".encode()).decode()}
        fields: dict[str, Any] = {"IsTruncated": start + max_items < len(items)}
        if fields["IsTruncated"]:
            fields["Marker"] = base64.b64encode(f"rekey-{kind}:{start + max_items}".encode()).decode()
        return items[start:start + max_items], fields

    def list_users(self: Any) -> Any:
        users = list(self.backend.list_users(self._get_param("PathPrefix"), None, None))
        page_of_users, fields = page(self, users, "users")
        return ActionResult({"Users": page_of_users, **fields})

    IamResponse.list_users = list_users

    # 1a. GetAccountAuthorizationDetails: moto returns everything in one page.
    #     Real IAM pages it; page the users the same way so clients'
    #     pagination is exercised (groups, roles, policies come on page one).
    def get_account_authorization_details(self: Any) -> Any:
        details = self.backend.get_account_authorization_details(self._get_param("Filter", []))
        users, fields = page(self, list(details["users"]), "details")
        first = not self._get_param("Marker")
        return ActionResult({
            "UserDetailList": users,
            "GroupDetailList": details["groups"] if first else [],
            "RoleDetailList": details["roles"] if first else [],
            "Policies": details["managed_policies"] if first else [],
            **fields,
        })

    IamResponse.get_account_authorization_details = get_account_authorization_details

    # 1b. Secrets Manager: moving AWSCURRENT with UpdateSecretVersionStage
    #     leaves moto's default version behind, so a GetSecretValue without
    #     a stage still returns the old AWSCURRENT. Real Secrets Manager
    #     always answers with the version staged AWSCURRENT.
    from moto.secretsmanager.models import SecretsManagerBackend

    orig_update_stage = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(self: Any, secret_id: str, version_stage: str,
                                    remove_from_version_id: str, move_to_version_id: str) -> Any:
        result = orig_update_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].default_version_id = move_to_version_id
        return result

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage

    # 2. Credential report: a snapshot, as real IAM keeps it (credential_report.py).
    credential_report.install_patch()

    # 3. Whole seconds: moto stamps users/keys created over the API and the
    #    last-used time it records on every signed request with microseconds
    #    ("2026-11-28T16:49:33.159088Z"); IAM's dates are whole seconds.
    def truncating_init(cls: Any, attr: str) -> None:
        orig_init = cls.__init__

        def __init__(self: Any, *a: Any, **k: Any) -> None:
            orig_init(self, *a, **k)
            value = getattr(self, attr, None)
            if isinstance(value, datetime):
                setattr(self, attr, value.replace(microsecond=0))

        cls.__init__ = __init__

    truncating_init(seeding.moto_iam.User, "create_date")
    truncating_init(seeding.moto_iam.AccessKey, "create_date")
    truncating_init(seeding.moto_iam.AccessKeyLastUsed, "_timestamp")

