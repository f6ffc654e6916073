"""Tests of what the harness seeds for [[exempt]] rules: users' IAM groups
(GetAccountAuthorizationDetails and ListGroupsForUser see them) and
accounts' organizational units (Organizations ListParents walks them up to
the root, answered only to the management account).

    python -m unittest discover -s tests/emulator -p 'test_harness_exempt.py' -v
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_harness_accounts import client  # noqa: E402
from test_harness_securityhub import RunningHarness  # noqa: E402

SCENARIO = {
    "as_of": "2026-11-28T12:00:00Z",
    "users": [
        {"name": "break-glass", "groups": ["KeyRotationExempt", "Admins"], "keys": [{"age": "200d"}]},
        {"name": "plain", "keys": [{"age": "200d"}]},
    ],
    "organization": {"role_name": "OrganizationAccountAccessRole"},
    "accounts": [
        {"id": "111111111111", "ou": ["ou-abcd-11111111", "ou-abcd-12345678"], "users": [{"name": "lab", "keys": [{"age": "200d"}]}]},
        {"id": "222222222222", "users": []},
    ],
}


class GroupsAndOus(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.h = RunningHarness(SCENARIO)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.h.stop()

    def test_users_are_in_their_groups(self) -> None:
        iam = client(self.h, "iam")
        groups = [g["GroupName"] for g in iam.list_groups_for_user(UserName="break-glass")["Groups"]]
        self.assertEqual(sorted(groups), ["Admins", "KeyRotationExempt"])
        self.assertEqual(iam.list_groups_for_user(UserName="plain")["Groups"], [])
        details = iam.get_account_authorization_details(Filter=["User"])["UserDetailList"]
        by_name = {u["UserName"]: sorted(u.get("GroupList", [])) for u in details}
        self.assertEqual(by_name["break-glass"], ["Admins", "KeyRotationExempt"])
        self.assertEqual(by_name["plain"], [])

    def test_list_parents_walks_up_to_the_root(self) -> None:
        org = client(self.h, "organizations")
        first = org.list_parents(ChildId="111111111111")["Parents"]
        self.assertEqual(first, [{"Id": "ou-abcd-12345678", "Type": "ORGANIZATIONAL_UNIT"}])
        second = org.list_parents(ChildId="ou-abcd-12345678")["Parents"]
        self.assertEqual(second, [{"Id": "ou-abcd-11111111", "Type": "ORGANIZATIONAL_UNIT"}])
        root = org.list_parents(ChildId="ou-abcd-11111111")["Parents"]
        self.assertEqual(root[0]["Type"], "ROOT")
        self.assertTrue(root[0]["Id"].startswith("r-"))
        self.assertEqual(org.list_parents(ChildId="222222222222")["Parents"][0]["Type"], "ROOT")
        with self.assertRaises(ClientError) as e:
            org.list_parents(ChildId="999999999999")
        self.assertEqual(e.exception.response["Error"]["Code"], "ChildNotFoundException")

    def test_a_bad_group_or_ou_is_refused_by_the_scenario(self) -> None:
        import scenario
        import json
        import tempfile
        for bad in ({"users": [{"name": "u", "groups": ["has space"]}]},
                    {"organization": {}, "accounts": [{"id": "111111111111", "ou": "lab"}]}):
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(bad, f)
            with self.assertRaises(scenario.InputError):
                scenario.load_scenario_file(f.name, None)
            Path(f.name).unlink()


if __name__ == "__main__":
    unittest.main()
