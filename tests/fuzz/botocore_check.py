"""The oracle of the credentials-file editor's property test: reads JSON
lines on stdin, one edit each ({"before", "after" (null if rekey refused),
"profile", "id", "secret", "rust": {profile: [4 values as rekey reads
them]}}), parses both texts with botocore's own reader (what the AWS CLI
and SDKs use), and prints one JSON summary: the cases, the mismatches (the
first few in full) and how many files botocore itself could not read.

A mismatch: rekey read a profile differently from botocore, or an edit
gave the edited profile other than the new key (and no session token), or
changed what botocore reads in any other profile or key.
The texts are fake keys made by the test, never real credentials."""

import json
import os
import sys
import tempfile

from botocore.configloader import raw_config_parse
from botocore.exceptions import ConfigParseError

KEYS = ["aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token"]


def parse(path, text, nested=True):
    # Bytes, so that Python's own newline handling applies on reading.
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    try:
        return raw_config_parse(path, parse_subsections=nested)
    except ConfigParseError as e:
        return {"error": str(e)}


def check(case, path):
    """(the problems found, whether botocore could read the file before the edit)."""
    before = parse(path, case["before"])
    if "error" in before:
        # Unreadable for the CLI already (the edit may mend it): only the edited profile is known.
        after = parse(path, case["after"]) if case["after"] is not None else {"error": ""}
        edited = after.get(case["profile"], {})
        if "error" not in after and [edited.get(k) for k in KEYS] != [case["id"], case["secret"], None, None]:
            return [f"the edited profile [{case['profile']}] reads {edited}"], False
        return [], False
    found = []
    flat = parse(path, case["before"], nested=False)
    for profile, values in case["rust"].items():
        theirs = [flat.get(profile, {}).get(k) for k in KEYS]
        if values != theirs:
            found.append(f"rekey reads [{profile}] as {values}, botocore as {theirs}")
    if case["after"] is None:
        return found, True
    after = parse(path, case["after"])
    if "error" in after:
        return found + [f"botocore cannot read the edited file: {after['error']}"], True
    profile = case["profile"]
    edited = after.get(profile, {})
    # A new profile inherits [DEFAULT]'s keys: read them from an empty section.
    old = before.get(profile) or parse(path, case["before"] + "\n[rekey probe]\n").get("rekey probe", {})
    wanted = {**{k: v for k, v in old.items() if k not in KEYS},
              "aws_access_key_id": case["id"], "aws_secret_access_key": case["secret"]}
    if edited != wanted:
        found.append(f"the edited profile [{profile}] reads {edited}, not {wanted}")
    others = lambda config: {name: v for name, v in config.items() if name != profile}
    if others(before) != others(after):
        found.append("another profile reads differently after the edit")
    return found, True


def main():
    summary = {"cases": 0, "mismatch_count": 0, "mismatches": [], "botocore_unreadable": 0}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "credentials")
        for line in sys.stdin:
            case = json.loads(line)
            found, readable = check(case, path)
            summary["cases"] += 1
            summary["botocore_unreadable"] += not readable
            if found:
                summary["mismatch_count"] += 1
                if len(summary["mismatches"]) < 5:
                    summary["mismatches"].append({"problems": found, **case})
    json.dump(summary, sys.stdout)


if __name__ == "__main__":
    main()
