"""The IAM credential report, as real IAM keeps it.

A snapshot per account, kept for 4 hours, with a <root_account> row and
quoted CSV: install_patch() (one of the moto fidelity patches, in
moto_patches.py) puts it in place of moto's live, unquoted report. Tests
change it through /_rekey/credential-report/ (expire it, switch the
quoting, override cells; credential_report_control) and /_rekey/root (the
root user's key). See README.md ("Where moto differs from IAM").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import seeding  # beside this file: moto's IAM (seeding.moto_iam, once imported)
from protocol import HttpError
from seeding import iam_backend, last_used_parts

REPORT_HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
).split(",")


REPORT_MAX_AGE = timedelta(hours=4)


@dataclass
class ReportSnapshot:
    generated: datetime
    rows: list[list[str]]  # data rows, <root_account> first


ROOT_CREATED: dict[str, datetime] = {}  # account -> root "user_creation_time" in the report
REPORT_SNAPSHOTS: dict[str, ReportSnapshot] = {}  # account -> the report IAM would hand back
REPORT_QUOTED = {"quoted": True}  # False: unquoted CSV, as moto writes it
REPORT_OVERRIDES: dict[str, dict[tuple[str, str], str]] = {}  # account -> (user, column) -> raw cell
ROOT_ACTIVE_KEY: dict[str, bool] = {}  # account -> the root user has an active access key


def credential_report_rows(backend: Any) -> list[list[str]]:
    """The report's rows as IAM would write them now."""
    def d(dt: datetime) -> str:
        return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")

    root_created = ROOT_CREATED.get(backend.account_id, datetime(2015, 1, 1))
    root_key = (["true", d(root_created)] if ROOT_ACTIVE_KEY.get(backend.account_id) else ["false", "N/A"])
    rows = [["<root_account>", f"arn:aws:iam::{backend.account_id}:root", d(root_created),
             "not_supported", "no_information", "not_supported", "not_supported", "true",
             *root_key, "N/A", "N/A", "N/A", "false", "N/A", "N/A", "N/A", "N/A",
             "false", "N/A", "false", "N/A"]]
    for user in list(backend.users.values()):
        if user.password:
            pw = ["true", d(user.password_last_used) if user.password_last_used else "no_information",
                  d(user.create_date), "N/A"]
        else:
            pw = ["false", "N/A", "N/A", "N/A"]
        keys = []
        for i in range(2):
            if i < len(user.access_keys):
                k = user.access_keys[i]
                at, svc, region = last_used_parts(k)
                keys += ["true" if k.status == "Active" else "false", d(k.create_date),
                         d(at) if at else "N/A", (region or "N/A") if at else "N/A",
                         (svc or "N/A") if at else "N/A"]
            else:
                keys += ["false", "N/A", "N/A", "N/A", "N/A"]
        certs = list(user.signing_certificates.values())
        cert_cols = []
        for i in range(2):
            cert_cols += ["true" if i < len(certs) and certs[i].status == "Active" else "false", "N/A"]
        rows.append([user.name, user.arn, d(user.create_date), *pw,
                     "true" if user.mfa_devices else "false", *keys, *cert_cols])
    return rows


def render_credential_report(account_id: str, snapshot: ReportSnapshot) -> str:
    """The snapshot as CSV: RFC 4180 (fields with ',' quoted) or, like moto,
    unquoted; with the cells a test overrode."""
    overrides = REPORT_OVERRIDES.get(account_id, {})
    rows = [[overrides.get((row[0], REPORT_HEADER[i]), cell) for i, cell in enumerate(row)]
            for row in snapshot.rows]
    if not REPORT_QUOTED["quoted"]:
        return "".join(",".join(r) + "\n" for r in [REPORT_HEADER, *rows])
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(REPORT_HEADER)
    w.writerows(rows)
    return out.getvalue()


def install_patch() -> None:
    """Puts this module's report in place of moto's (GenerateCredentialReport,
    GetCredentialReport)."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.iam.responses import IamResponse

    # 2. Credential report: moto builds it live on every GetCredentialReport,
    #    writes unquoted CSV, fills access_key_N_last_used_region/service with
    #    "not_supported", has no <root_account> row, and a fixed GeneratedTime
    #    of 2015-02-02. Real IAM keeps a snapshot: GenerateCredentialReport
    #    hands back the existing one while it is younger than 4 hours.
    IAMBackend = seeding.moto_iam.IAMBackend

    def generate_report(self: Any) -> None:
        now = utcnow().replace(microsecond=0)
        snapshot = REPORT_SNAPSHOTS.get(self.account_id)
        if snapshot is None or now - snapshot.generated >= REPORT_MAX_AGE:
            REPORT_SNAPSHOTS[self.account_id] = ReportSnapshot(now, credential_report_rows(self))
        self.credential_report = True

    def get_credential_report(self: Any) -> str:
        snapshot = REPORT_SNAPSHOTS.get(self.account_id)
        if not self.credential_report or snapshot is None:
            raise seeding.moto_iam.ReportNotPresentException("Credential report not present")
        return render_credential_report(self.account_id, snapshot)

    def get_credential_report_response(self: Any) -> Any:
        report = self.backend.get_credential_report()
        generated = REPORT_SNAPSHOTS[self.backend.account_id].generated
        return ActionResult({"Content": report, "ReportFormat": "text/csv", "GeneratedTime": generated})

    IAMBackend.generate_report = generate_report
    IAMBackend.get_credential_report = get_credential_report
    IamResponse.get_credential_report = get_credential_report_response


def credential_report_control(parts: list[str], body: dict, account: str) -> dict:
    if parts == ["expire"]:
        # As if 4 hours had passed: the next GenerateCredentialReport starts a new report.
        expired = REPORT_SNAPSHOTS.pop(account, None) is not None
        iam_backend(account).credential_report = None
        return {"expired": expired}
    if parts == ["style"]:
        quoted = body.get("quoted")
        if set(body) != {"quoted"} or not isinstance(quoted, bool):
            raise HttpError(400, "body must be {\"quoted\": true|false}")
        REPORT_QUOTED["quoted"] = quoted
        return {"quoted": quoted}
    if parts == ["override"]:
        user, column, value = body.get("user"), body.get("column"), body.get("value")
        if set(body) != {"user", "column", "value"} or not all(isinstance(v, str) for v in (user, column, value)):
            raise HttpError(400, "body must be {\"user\", \"column\", \"value\"} (strings)")
        if column not in REPORT_HEADER:
            raise HttpError(400, f"no report column {column!r}")
        REPORT_OVERRIDES.setdefault(account, {})[(user, column)] = value
        return {"user": user, "column": column, "value": value}
    raise HttpError(404, "no harness endpoint POST /_rekey/credential-report/" + "/".join(parts))
