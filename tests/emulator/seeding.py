"""moto's IAM as the harness reaches it, and the scenario's users put in it.

moto is imported lazily (import_moto), so that a bad scenario fails before
the slow import: read it as ``seeding.moto_iam`` at call time, never bind it
with ``from seeding import moto_iam``. The lookups here (a key by id, is it
an Active key of an existing user) are moto's own dicts, never a scan of
users. seed() writes scenario users straight into moto's backend objects,
with back-dated create dates and last-used data that the API cannot set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from scenario import DEFAULT_ACCOUNT_ID, UserSpec

# --------------------------------------------------------------------------
# moto access (imported lazily so that scenario errors exit fast)
# --------------------------------------------------------------------------

moto_iam: Any = None  # moto.iam.models, set by import_moto()


def import_moto() -> None:
    global moto_iam
    import moto.iam.models as m

    moto_iam = m


def iam_backend(account_id: str = DEFAULT_ACCOUNT_ID) -> Any:
    return moto_iam.iam_backends[account_id]["global"]


def existing_iam_backends(account_id: str | None = None) -> Iterable[tuple[str, Any]]:
    """(account_id, backend) for backends that already exist; never creates new ones."""
    accounts = list(moto_iam.iam_backends.items())
    for acct, per_partition in accounts:
        if account_id is not None and acct != account_id:
            continue
        for backend in list(per_partition.values()):
            yield acct, backend


def find_key(access_key_id: str, account_id: str | None = None) -> tuple[str, Any, Any] | None:
    """(account, backend, AccessKey) for a user access key, or None.

    backend.access_keys is moto's own dict keyed by access key id (it also
    holds ASIA session keys, which have user_name None), so this is a couple
    of dict lookups per existing account/partition, not a scan of users.
    """
    for acct, backend in existing_iam_backends(account_id):
        key = backend.access_keys.get(access_key_id)
        if key is not None and key.user_name is not None:
            return acct, backend, key
    return None


def is_active_user_key(access_key_id: str) -> bool:
    """True if the key is an Active access key attached to an existing IAM user.

    moto's delete_user leaves the user's keys in backend.access_keys, so the
    user is checked too.
    """
    for _acct, backend in existing_iam_backends():
        key = backend.access_keys.get(access_key_id)
        if key is None or key.user_name is None:
            continue
        user = backend.users.get(key.user_name)
        if user is None or not any(k is key for k in user.access_keys):
            continue
        return key.status == "Active"
    return False


def last_used_parts(key: Any) -> tuple[datetime | None, str | None, str | None]:
    lu = key.last_used
    if lu is None:
        return None, None, None
    if isinstance(lu, moto_iam.AccessKeyLastUsed):
        return lu.timestamp, lu.service, lu.region
    if isinstance(lu, datetime):  # moto tolerates a bare datetime here
        return lu, None, None
    return None, None, None


# --------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------


def seed(users: list[UserSpec], account_id: str = DEFAULT_ACCOUNT_ID) -> None:
    backend = iam_backend(account_id)
    for spec in users:
        tags = [{"Key": k, "Value": v} for k, v in spec.tags]
        user = backend.create_user("us-east-1", spec.name, path=spec.path, tags=tags)
        user.create_date = spec.created
        for group in spec.groups:
            if group not in backend.groups:
                backend.create_group(group, "/")
            backend.add_user_to_group(group, spec.name)
        for ks in spec.keys:
            key = backend.create_access_key(spec.name, status=ks.status)
            key.create_date = ks.created
            if ks.last_used is not None:
                at, service, region = ks.last_used
                key.last_used = moto_iam.AccessKeyLastUsed(timestamp=at, service=service, region=region)
