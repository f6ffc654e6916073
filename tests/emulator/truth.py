"""Ground truth: rekey's rotation rules applied to moto's IAM state.

The --truth file and GET /_rekey/truth hold, per access key, what rekey
should report (FAILED, WARNING or PASSED, whole-second precision) and who
owns it (the first of the Owner, owner, Team tags). Tests compare rekey's
output with it. See README.md ("Ground truth").
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

from scenario import DEFAULT_ACCOUNT_ID, OWNER_TAG_KEYS, fmt_time
from seeding import iam_backend, last_used_parts


def user_tags(backend: Any, user: Any) -> list[dict[str, str]]:
    return backend.tagger.list_tags_for_resource(user.arn)["Tags"]


def owner_of(tags: list[dict[str, str]]) -> str | None:
    by_key = {t["Key"]: t["Value"] for t in tags}
    for k in OWNER_TAG_KEYS:
        if k in by_key:
            return by_key[k]
    return None


def classify(status: str, created: datetime, as_of: datetime, max_age: timedelta, warn: timedelta) -> str:
    if status != "Active":
        return "PASSED"
    if as_of - created > max_age:
        return "FAILED"
    if as_of + warn - created > max_age:
        return "WARNING"
    return "PASSED"


def compute_truth(as_of: datetime, max_age_days: int, warn_within_days: int,
                  account_id: str = DEFAULT_ACCOUNT_ID) -> dict:
    backend = iam_backend(account_id)
    max_age = timedelta(days=max_age_days)
    warn = timedelta(days=warn_within_days)
    rows = []
    users = list(backend.users.values())
    for user in users:
        owner = owner_of(user_tags(backend, user))
        for key in list(user.access_keys):
            created = key.create_date.replace(microsecond=0)
            at, _svc, _region = last_used_parts(key)
            rows.append({
                "user_name": user.name,
                "user_arn": user.arn,
                "access_key_id": key.access_key_id,
                "status": key.status,
                "created_at": fmt_time(created),
                "age_days": (as_of - created) // timedelta(days=1),
                "last_used_at": fmt_time(at.replace(microsecond=0)) if at else None,
                "owner": owner,
                "result": classify(key.status, created, as_of, max_age, warn),
                "_sort": (user.name, created, key.access_key_id),
            })
    rows.sort(key=lambda r: r["_sort"])
    for r in rows:
        del r["_sort"]
    count = {res: sum(1 for r in rows if r["result"] == res) for res in ("FAILED", "WARNING", "PASSED")}
    return {
        "as_of": fmt_time(as_of),
        "max_age_days": max_age_days,
        "warn_within_days": warn_within_days,
        "account_id": account_id,
        "summary": {
            "users": len(users),
            "keys": len(rows),
            "failed": count["FAILED"],
            "warning": count["WARNING"],
            "suppressed": 0,  # Security Hub suppression comes with a later issue
            "passed": count["PASSED"],
        },
        "keys": rows,
    }


def compute_truth_file(as_of: datetime, max_age_days: int, warn_within_days: int, account_ids: list[str]) -> dict:
    """The --truth file: the default account's truth at the top level (as
    before there were several accounts), and every account's under "accounts"."""
    truth = compute_truth(as_of, max_age_days, warn_within_days)
    truth["accounts"] = {acct: (compute_truth(as_of, max_age_days, warn_within_days, acct)
                                if acct != DEFAULT_ACCOUNT_ID else dict(truth))
                         for acct in account_ids}
    return truth


def write_json_atomic(path: str, obj: Any, indent: int | None = None) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")
    os.rename(tmp, path)
