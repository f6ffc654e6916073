"""Offline checks of the deployment examples in deploy/.

Run by scripts/check-deploy.sh (`python3 tests/deploy/deploy_checks.py`),
and exercised on deliberately broken copies by test_deploy_checks.py.

Each check runs the real tool where there is one, and fails on any
complaint, not only on the tool's exit status (systemd-analyze verify exits 0
on an unknown directive; kubernetes-validate exits 0 on a kind it has no
schema for):

- systemd: `systemd-analyze verify` on copies of the units in a temporary
  directory, where the ExecStart= binary, if it is not installed here, is a
  stub (the rest of the command line is as written), and `systemd-analyze
  security --offline=yes` with an exposure threshold. Without
  systemd-analyze, a small parser: known sections and directives only,
  booleans, time spans, calendar specifications. Either way, the settings
  deploy/README.md promises (command, environment, hardening, schedule).
- Kubernetes: `kubernetes-validate --strict` against the pinned Kubernetes
  versions, then the settings the README promises (IRSA, non-root,
  read-only root, no capabilities, resources, rekey.toml for DynamoDB).
- CloudFormation: `cfn-lint` (errors and warnings fail), then the DynamoDB
  table against the schema rekey creates, and the task role's DynamoDB
  actions.

Tools are taken from PATH. Python 3.11+ (tomllib) and PyYAML are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD_DIR = DEPLOY / "systemd"
K8S_MANIFEST = DEPLOY / "kubernetes" / "cronjob.yaml"
CFN_DIR = DEPLOY / "cloudformation"
CFN_ECS = CFN_DIR / "ecs-scheduled-task.yaml"

# The pip packages the checks run, as tested; scripts/check-deploy.sh names
# them when one is missing.
PIP_PACKAGES = ("cfn-lint==1.58.0", "kubernetes-validate==1.37.0", "PyYAML")

# The oldest and the newest Kubernetes version kubernetes-validate 1.37 has.
K8S_VERSIONS = ("1.25.0", "1.37.0")

# `systemd-analyze security` scores exposure 0.0 (best) to 10.0; its
# --threshold is in tenths. The unit scores 1.2 with systemd 252.
SECURITY_THRESHOLD_TENTHS = 20

REKEY_BIN = "/usr/local/bin/rekey"
METRICS_FILE = "/var/lib/prometheus/node-exporter/rekey.prom"
REKEY_EXEC = f"{REKEY_BIN} run --once --log-format json --metrics {METRICS_FILE}"
REKEY_CONFIG = "/etc/rekey/rekey.toml"


class CheckError(Exception):
    """A check failed; the message says why (one problem a line)."""


def _fail_if(problems: list[str], what: str) -> None:
    if problems:
        raise CheckError(f"{what}:\n" + "\n".join(f"  - {p}" for p in problems))


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CheckError(
            f"{name} not found on PATH; install the checks' tools with "
            f"`pip install {' '.join(PIP_PACKAGES)}` (scripts/check-deploy.sh)"
        )
    return path


def run_tool(cmd: list[str], cwd: Path | None = None) -> tuple[int, str]:
    """Runs a checker (from the repository root unless told); returns its
    exit status and its stdout+stderr."""
    proc = subprocess.run(cmd, cwd=cwd or REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout.strip()


def rel(path: Path) -> str:
    """A path as given on the command line: relative to the repository root."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def tool_version(tool: str) -> str:
    _, out = run_tool([tool, "--version"])
    return out.splitlines()[0] if out else "version unknown"


# --------------------------------------------------------------------------
# systemd

# The sections and directives the fallback parser knows: what these units
# use and the common neighbours, not systemd's whole vocabulary (a directive
# outside it fails, as an unknown one does in `systemd-analyze verify`).
KNOWN_DIRECTIVES = {
    "Unit": {
        "Description", "Documentation", "Wants", "Requires", "Requisite", "BindsTo", "PartOf",
        "Conflicts", "Before", "After", "OnFailure", "OnSuccess", "ConditionPathExists",
        "AssertPathExists", "StartLimitIntervalSec", "StartLimitBurst", "DefaultDependencies",
    },
    "Service": {
        "Type", "ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost",
        "ExecCondition", "Restart", "RestartSec", "TimeoutSec", "TimeoutStartSec", "TimeoutStopSec",
        "RuntimeMaxSec", "SuccessExitStatus", "RemainAfterExit", "WorkingDirectory", "Environment",
        "EnvironmentFile", "PassEnvironment", "UnsetEnvironment", "User", "Group", "DynamicUser",
        "SupplementaryGroups", "UMask", "StateDirectory", "CacheDirectory", "LogsDirectory",
        "RuntimeDirectory", "ConfigurationDirectory", "LoadCredential", "SetCredential",
        "StandardOutput", "StandardError", "SyslogIdentifier", "LogLevelMax", "Nice",
        "CPUQuota", "MemoryMax", "MemoryHigh", "TasksMax", "IOWeight", "CPUWeight",
        "ProtectSystem", "ProtectHome", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths",
        "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "PrivateTmp", "PrivateDevices",
        "PrivateNetwork", "PrivateUsers", "PrivateMounts", "PrivateIPC", "NoNewPrivileges",
        "CapabilityBoundingSet", "AmbientCapabilities", "ProtectKernelTunables",
        "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
        "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictNamespaces", "RestrictRealtime",
        "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC",
        "KeyringMode", "RestrictAddressFamilies", "IPAddressAllow", "IPAddressDeny",
        "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "DevicePolicy",
        "DeviceAllow",
    },
    "Timer": {
        "OnActiveSec", "OnBootSec", "OnStartupSec", "OnUnitActiveSec", "OnUnitInactiveSec",
        "OnCalendar", "AccuracySec", "RandomizedDelaySec", "FixedRandomDelay", "OnClockChange",
        "OnTimezoneChange", "Unit", "Persistent", "WakeSystem", "RemainAfterElapse",
    },
    "Install": {"WantedBy", "RequiredBy", "Alias", "Also", "DefaultInstance"},
}

BOOLEAN_DIRECTIVES = {
    "DynamicUser", "RemainAfterExit", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "PrivateUsers",
    "PrivateMounts", "PrivateIPC", "NoNewPrivileges", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
    "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC",
    "Persistent", "WakeSystem", "RemainAfterElapse", "FixedRandomDelay", "OnClockChange",
    "OnTimezoneChange", "DefaultDependencies",
}
TIMESPAN_DIRECTIVES = {
    "RestartSec", "TimeoutSec", "TimeoutStartSec", "TimeoutStopSec", "RuntimeMaxSec",
    "StartLimitIntervalSec", "OnActiveSec", "OnBootSec", "OnStartupSec", "OnUnitActiveSec",
    "OnUnitInactiveSec", "AccuracySec", "RandomizedDelaySec",
}
ENUM_DIRECTIVES = {
    "Type": {"simple", "exec", "forking", "oneshot", "dbus", "notify", "notify-reload", "idle"},
    "ProtectSystem": {"yes", "true", "no", "false", "full", "strict"},
    "ProtectHome": {"yes", "true", "no", "false", "read-only", "tmpfs"},
    "ProtectProc": {"noaccess", "invisible", "ptraceable", "default"},
    "ProcSubset": {"all", "pid"},
    "SystemCallArchitectures": {"native", "x86", "x86-64", "x32", "arm", "arm64"},
}
TRUE = {"yes", "true", "on", "1"}
FALSE = {"no", "false", "off", "0"}

TIMESPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2629800, "month": 2629800, "months": 2629800,
    "y": 31557600, "year": 31557600, "years": 31557600,
}


def parse_timespan(text: str) -> float:
    """Seconds in a systemd time span ("5min", "1h 30s", "90"); ValueError if not one."""
    text = text.strip()
    if text == "infinity":
        return float("inf")
    parts = re.findall(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        raise ValueError(f"not a time span: {text!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in TIMESPAN_UNITS:
            raise ValueError(f"unknown time unit {unit!r} in {text!r}")
        total += float(number) * TIMESPAN_UNITS[unit]
    return total


CALENDAR_SHORTHANDS = {
    "minutely": "*-*-* *:*:00", "hourly": "*-*-* *:00:00", "daily": "*-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00", "weekly": "Mon *-*-* 00:00:00", "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00", "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _calendar_values(field: str, low: int, high: int, what: str) -> set[int]:
    """The values a calendar component ("*", "0/15", "1..5", "1,3") matches."""
    values: set[int] = set()
    for item in field.split(","):
        m = re.fullmatch(r"(\*|\d+)(?:\.\.(\d+))?(?:/(\d+))?", item)
        if not m:
            raise ValueError(f"bad {what} {item!r}")
        start = low if m.group(1) == "*" else int(m.group(1))
        end = int(m.group(2)) if m.group(2) else (high if (m.group(1) == "*" or m.group(3)) else start)
        step = int(m.group(3)) if m.group(3) else 1
        if step == 0 or not (low <= start <= high and low <= end <= high) or end < start:
            raise ValueError(f"{what} {item!r} out of range {low}..{high}")
        values.update(range(start, end + 1, step))
    return values


def parse_calendar(spec: str) -> dict[str, set[int]]:
    """A subset of systemd.time(7) calendar events, for the fallback:
    `[weekdays] [[year-]month-day] [hour:minute[:second]] [UTC]`, each
    component `*`, numbers, `a..b` ranges, `/step` and comma lists.
    Returns the matched values of each component; ValueError if malformed."""
    spec = CALENDAR_SHORTHANDS.get(spec.strip().lower(), spec.strip())
    words = spec.split()
    if words and words[-1] == "UTC":
        words = words[:-1]
    if not words or len(words) > 3:
        raise ValueError(f"bad calendar specification {spec!r}")
    result: dict[str, set[int]] = {"weekday": set(range(7))}
    if re.fullmatch(r"[A-Za-z]{3,9}([.,][.A-Za-z]*)*", words[0]):
        days: set[int] = set()
        for item in words.pop(0).split(","):
            ends = item.split("..")
            if len(ends) > 2 or any(e[:3].lower() not in WEEKDAYS for e in ends):
                raise ValueError(f"bad weekday {item!r}")
            a, b = WEEKDAYS.index(ends[0][:3].lower()), WEEKDAYS.index(ends[-1][:3].lower())
            days.update(range(a, b + 1))
        result["weekday"] = days
    date, time = None, None
    for word in words:
        if ":" in word and time is None:
            time = word
        elif "-" in word and date is None and time is None:
            date = word
        else:
            raise ValueError(f"bad calendar specification {spec!r}")
    parts = (date or "*-*-*").split("-")
    if len(parts) == 2:
        parts = ["*"] + parts
    if len(parts) != 3:
        raise ValueError(f"bad date {date!r}")
    result["year"] = _calendar_values(parts[0], 1970, 2199, "year")
    result["month"] = _calendar_values(parts[1], 1, 12, "month")
    result["day"] = _calendar_values(parts[2], 1, 31, "day")
    hms = (time or "00:00:00").split(":")
    if len(hms) == 2:
        hms.append("00")
    if len(hms) != 3:
        raise ValueError(f"bad time {time!r}")
    result["hour"] = _calendar_values(hms[0], 0, 23, "hour")
    result["minute"] = _calendar_values(hms[1], 0, 59, "minute")
    result["second"] = _calendar_values(hms[2], 0, 59, "second")
    return result


def parse_unit(text: str, name: str = "unit") -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections, each a list of (directive, value) in order.
    Comments, blank lines and backslash continuations as systemd.syntax(7)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if line.startswith("["):
            if not line.endswith("]"):
                raise CheckError(f"{name}:{lineno}: bad section header {line!r}")
            current = line[1:-1]
            if current in sections:
                raise CheckError(f"{name}:{lineno}: section [{current}] appears twice")
            sections[current] = []
            continue
        if current is None:
            raise CheckError(f"{name}:{lineno}: assignment outside a section")
        if "=" not in line:
            raise CheckError(f"{name}:{lineno}: not a key=value line: {line!r}")
        key, value = line.split("=", 1)
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(sections: dict, section: str, key: str) -> list[str]:
    """Every assignment of a directive, in order (list-valued directives)."""
    return [v for k, v in sections.get(section, []) if k == key]


def last(sections: dict, section: str, key: str) -> str | None:
    vs = values(sections, section, key)
    return vs[-1] if vs else None


def effective_list(sections: dict, section: str, key: str) -> tuple[bool, list[str]]:
    """(reset, items) for a list directive: an empty assignment resets it."""
    reset, items = False, []
    for v in values(sections, section, key):
        if v == "":
            reset, items = True, []
        else:
            items.extend(v.split())
    return reset, items


def syntax_problems(sections: dict, name: str) -> list[str]:
    """The fallback's syntax checks: known sections and directives, and values."""
    problems = []
    for section, items in sections.items():
        known = KNOWN_DIRECTIVES.get(section)
        if known is None:
            problems.append(f"{name}: unknown section [{section}]")
            continue
        for key, value in items:
            if key not in known:
                problems.append(f"{name}: unknown directive {key}= in [{section}]")
            elif key in BOOLEAN_DIRECTIVES and value.lower() not in TRUE | FALSE:
                problems.append(f"{name}: {key}={value} is not a boolean")
            elif key in TIMESPAN_DIRECTIVES:
                try:
                    parse_timespan(value)
                except ValueError as e:
                    problems.append(f"{name}: {key}={value}: {e}")
            elif key in ENUM_DIRECTIVES and value not in ENUM_DIRECTIVES[key]:
                problems.append(f"{name}: {key}={value} is not one of {sorted(ENUM_DIRECTIVES[key])}")
            elif key == "OnCalendar":
                try:
                    parse_calendar(value)
                except ValueError as e:
                    problems.append(f"{name}: OnCalendar={value}: {e}")
            elif key.startswith("Exec") and not re.match(r"[-@:+!]*/", value):
                problems.append(f"{name}: {key}= must start with an absolute path: {value!r}")
    return problems


def policy_problems(service: dict, timer: dict) -> list[str]:
    """What deploy/README.md says of the units, whichever checker parsed them."""
    p = []

    def want(section, key, expected, sections=service, unit="rekey.service"):
        got = last(sections, section, key)
        ok = got is not None and (
            got.lower() in TRUE if expected is True else got == expected
        )
        if not ok:
            p.append(f"{unit}: [{section}] {key}= must be {'yes' if expected is True else expected!r}, is {got!r}")

    want("Service", "Type", "oneshot")
    if values(service, "Service", "ExecStart") != [REKEY_EXEC]:
        p.append(f"rekey.service: ExecStart= must be exactly {REKEY_EXEC!r}")
    env = " ".join(values(service, "Service", "Environment"))
    if f"REKEY_CONFIG={REKEY_CONFIG}" not in env.replace('"', "").split():
        p.append(f"rekey.service: Environment= must set REKEY_CONFIG={REKEY_CONFIG}")
    user = last(service, "Service", "User")
    dynamic = (last(service, "Service", "DynamicUser") or "no").lower() in TRUE
    if not dynamic and (user is None or user in ("root", "0")):
        p.append("rekey.service: must run as a dedicated user (User= not root, or DynamicUser=yes)")
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictSUIDSGID",
                "RestrictRealtime", "LockPersonality", "MemoryDenyWriteExecute", "RestrictNamespaces"):
        want("Service", key, True)
    want("Service", "ProtectSystem", "strict")
    if (last(service, "Service", "ProtectHome") or "no").lower() not in TRUE | {"read-only", "tmpfs"}:
        p.append("rekey.service: ProtectHome= must be yes, read-only or tmpfs")
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        reset, items = effective_list(service, "Service", key)
        if items or (key == "CapabilityBoundingSet" and not reset):
            p.append(f"rekey.service: {key}= must be empty, is {items!r}")
    _, rw = effective_list(service, "Service", "ReadWritePaths")
    if rw != [os.path.dirname(METRICS_FILE)]:
        p.append(f"rekey.service: ReadWritePaths= must be only {os.path.dirname(METRICS_FILE)}, is {rw!r}")
    for key in ("RestrictAddressFamilies", "SystemCallFilter", "SystemCallArchitectures"):
        if not values(service, "Service", key):
            p.append(f"rekey.service: {key}= must be set")

    def want_timer(key, expected):
        want("Timer", key, expected, sections=timer, unit="rekey.timer")

    calendars = values(timer, "Timer", "OnCalendar")
    if len(calendars) != 1:
        p.append(f"rekey.timer: one OnCalendar= expected, found {len(calendars)}")
    else:
        try:
            cal = parse_calendar(calendars[0])
            if (cal["minute"], cal["second"], cal["hour"]) != ({0, 15, 30, 45}, {0}, set(range(24))):
                p.append(f"rekey.timer: OnCalendar={calendars[0]} is not every 15 minutes")
        except ValueError as e:
            p.append(f"rekey.timer: OnCalendar={calendars[0]}: {e}")
    delay = last(timer, "Timer", "RandomizedDelaySec")
    try:
        if delay is None or not 0 < parse_timespan(delay) <= 15 * 60:
            p.append(f"rekey.timer: RandomizedDelaySec= must be set, above 0 and at most 15min, is {delay!r}")
    except ValueError as e:
        p.append(f"rekey.timer: RandomizedDelaySec={delay}: {e}")
    want_timer("Persistent", True)
    if last(timer, "Timer", "Unit") not in (None, "rekey.service"):
        p.append("rekey.timer: Unit= must be rekey.service")
    if "timers.target" not in " ".join(values(timer, "Install", "WantedBy")).split():
        p.append("rekey.timer: [Install] WantedBy=timers.target expected")
    return p


def _systemd_version(tool: str) -> int:
    _, out = run_tool([tool, "--version"])
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else 0


def systemd_analyze_problems(unit_dir: Path, tool: str, notes: list[str]) -> list[str]:
    """`systemd-analyze verify` and `security` on copies of the units whose
    ExecStart= binary, when missing here, is a stub. Any message fails."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="rekey-units-") as tmp:
        tmpdir = Path(tmp)
        for unit in ("rekey.service", "rekey.timer"):
            text = (unit_dir / unit).read_text()

            def stub(m: re.Match) -> str:
                binary = m.group(3)
                if os.access(binary, os.X_OK):
                    return m.group(0)
                fake = tmpdir / "bin" / Path(binary).name
                fake.parent.mkdir(exist_ok=True)
                fake.write_text("#!/bin/sh\nexit 0\n")
                fake.chmod(0o755)
                notes.append(f"{unit}: {binary} is not installed here; verified with a stub at that place in {m.group(1)}=")
                return f"{m.group(1)}={m.group(2)}{fake}"

            text = re.sub(r"^(Exec[A-Za-z]*)=([-@:+!]*)(\S+)", stub, text, flags=re.M)
            (tmpdir / unit).write_text(text)
        cmd = [tool, "verify", "--man=no", "rekey.service", "rekey.timer"]
        notes.append("$ " + " ".join(cmd))
        status, out = run_tool(cmd, cwd=tmpdir)
        if status != 0 or out:
            problems.append(f"systemd-analyze verify (exit {status}): {out or 'no output'}")
        if _systemd_version(tool) >= 250:
            cmd = [tool, "security", "--offline=yes", f"--threshold={SECURITY_THRESHOLD_TENTHS}", "rekey.service"]
            notes.append("$ " + " ".join(cmd))
            status, out = run_tool(cmd, cwd=tmpdir)
            score = re.search(r"Overall exposure level for rekey.service: (\S+)", out)
            if status != 0:
                problems.append(f"systemd-analyze security: exposure {score.group(1) if score else '?'} "
                                f"above {SECURITY_THRESHOLD_TENTHS / 10} (exit {status})")
            else:
                notes.append(f"systemd-analyze security: exposure {score.group(1) if score else '?'} "
                             f"(at most {SECURITY_THRESHOLD_TENTHS / 10})")
        else:
            notes.append("systemd-analyze security --offline needs systemd 250+: exposure not scored")
    return problems


def check_systemd(unit_dir: Path = SYSTEMD_DIR, use_analyze: bool | None = None) -> list[str]:
    """Checks rekey.service and rekey.timer; returns notes, raises CheckError.
    use_analyze: None uses systemd-analyze when on PATH, True requires it,
    False uses the Python parser's syntax checks instead."""
    notes: list[str] = []
    service = parse_unit((unit_dir / "rekey.service").read_text(), "rekey.service")
    timer = parse_unit((unit_dir / "rekey.timer").read_text(), "rekey.timer")
    tool = shutil.which("systemd-analyze") if use_analyze is not False else None
    if use_analyze and tool is None:
        raise CheckError("systemd-analyze not found on PATH")
    if tool:
        notes.append(f"systemd-analyze: {tool_version(tool)}")
        problems = systemd_analyze_problems(unit_dir, tool, notes)
    else:
        why = "not on PATH" if use_analyze is None else "not used (--systemd-fallback)"
        notes.append(f"systemd-analyze {why}: the units are checked by the Python parser only "
                     "(known directives, booleans, time spans, calendar syntax), not by systemd")
        problems = syntax_problems(service, "rekey.service") + syntax_problems(timer, "rekey.timer")
    problems += policy_problems(service, timer)
    _fail_if(problems, f"systemd units in {rel(unit_dir)}")
    notes.append("rekey.service/rekey.timer: command, REKEY_CONFIG, user, hardening, 15-minute schedule as documented")
    return notes


# --------------------------------------------------------------------------
# Kubernetes

def k8s_policy_problems(docs: list[dict]) -> list[str]:
    p = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    for kind in ("ServiceAccount", "ConfigMap", "CronJob"):
        if len(by_kind.get(kind, [])) != 1:
            p.append(f"exactly one {kind} expected, found {len(by_kind.get(kind, []))}")
    if p:
        return p
    sa, cm, cj = by_kind["ServiceAccount"][0], by_kind["ConfigMap"][0], by_kind["CronJob"][0]
    role = (sa["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/\S+", role):
        p.append(f"ServiceAccount: eks.amazonaws.com/role-arn must be an IAM role ARN, is {role!r}")
    if cj.get("apiVersion") != "batch/v1":
        p.append("CronJob: apiVersion must be batch/v1")
    spec = cj["spec"]
    if spec.get("schedule") != "*/15 * * * *":
        p.append(f"CronJob: schedule must be */15 * * * *, is {spec.get('schedule')!r}")
    if spec.get("concurrencyPolicy") != "Forbid":
        p.append("CronJob: concurrencyPolicy must be Forbid")
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    if pod.get("serviceAccountName") != sa["metadata"]["name"]:
        p.append("CronJob: serviceAccountName must be the annotated ServiceAccount")
    namespaces = {sa["metadata"].get("namespace"), cm["metadata"].get("namespace"), cj["metadata"].get("namespace")}
    if len(namespaces) != 1:
        p.append(f"ServiceAccount, ConfigMap and CronJob must share a namespace, are in {namespaces}")
    pod_sc = pod.get("securityContext") or {}
    containers = pod.get("containers") or []
    if len(containers) != 1:
        return p + [f"CronJob: one container expected, found {len(containers)}"]
    c = containers[0]
    sc = c.get("securityContext") or {}
    # The container's setting overrides the pod's.
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        p.append("CronJob: runAsNonRoot must be true")
    if sc.get("readOnlyRootFilesystem") is not True:
        p.append("CronJob: container readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        p.append("CronJob: container allowPrivilegeEscalation must be false")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"] or (sc.get("capabilities") or {}).get("add"):
        p.append("CronJob: container capabilities must drop ALL and add none")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(res.get(kind) or {}):
            p.append(f"CronJob: container resources.{kind} must set cpu and memory")
    argv = (c.get("command") or []) + (c.get("args") or [])
    if argv != [REKEY_BIN, "run", "--once", "--log-format", "json"]:
        p.append(f"CronJob: container must run {REKEY_BIN} run --once --log-format json, runs {argv!r}")
    env = {e.get("name"): e.get("value") for e in c.get("env") or []}
    config = env.get("REKEY_CONFIG")
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    config_ok = False
    for name, mount in mounts.items():
        cm_ref = (volumes.get(name) or {}).get("configMap", {}).get("name")
        if cm_ref == cm["metadata"]["name"] and config and os.path.dirname(config) == mount["mountPath"].rstrip("/"):
            config_ok = os.path.basename(config) in cm.get("data", {})
    if not config_ok:
        p.append("CronJob: REKEY_CONFIG must name a file of the ConfigMap, mounted from it")
    toml_text = cm.get("data", {}).get("rekey.toml")
    if toml_text is None:
        p.append("ConfigMap: rekey.toml missing")
    else:
        try:
            state = tomllib.loads(toml_text).get("state", {})
            if state.get("backend") != "dynamodb" or not state.get("table"):
                p.append('ConfigMap: rekey.toml must have [state] backend = "dynamodb" and a table')
        except tomllib.TOMLDecodeError as e:
            p.append(f"ConfigMap: rekey.toml is not TOML: {e}")
    return p


def check_kubernetes(path: Path = K8S_MANIFEST, versions=K8S_VERSIONS) -> list[str]:
    tool = require_tool("kubernetes-validate")
    notes, problems = [f"kubernetes-validate: {tool_version(tool)}"], []
    for version in versions:
        cmd = [tool, "--strict", "--quiet", "-k", version, rel(path)]
        notes.append("$ " + " ".join(cmd))
        status, out = run_tool(cmd)
        # --quiet prints only warnings and failures; a kind without a schema
        # (a typo, a removed apiVersion) is only a warning, with exit 0.
        if status != 0 or out:
            problems.append(f"kubernetes-validate -k {version} (exit {status}): {out or 'no output'}")
    if not problems:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            raise CheckError(f"{path}: not YAML: {e}") from e
        problems += k8s_policy_problems(docs)
    _fail_if(problems, str(path))
    notes.append(f"{rel(path)}: IRSA, non-root, read-only root, no capabilities, resources, DynamoDB rekey.toml")
    return notes


# --------------------------------------------------------------------------
# CloudFormation

class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags as their long form: `!Ref X`
    is {"Ref": "X"}, `!GetAtt A.B` is {"Fn::GetAtt": ["A", "B"]}."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_cfn(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 (SafeLoader subclass)


def rekey_program() -> str:
    """The rekey binary the checks ask for the table and the policy (REKEY
    overrides; the default is the workspace's debug build)."""
    program = os.environ.get("REKEY", str(REPO / "target" / "debug" / "rekey"))
    if not os.access(program, os.X_OK):
        raise SystemExit(f"{program} is not built: run `cargo build` first (or set REKEY to a rekey binary)")
    return program


def rekey_json(*args: str) -> dict:
    """What `rekey ARGS` prints, as JSON; with no config file and a DynamoDB
    state table, whatever the machine's rekey.toml says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REKEY_", "AWS_"))}
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "rekey.toml"
        config.write_text("")
        cmd = [rekey_program(), "--config", str(config), "--state", "dynamodb:rekey-state", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**env, "HOME": home}, cwd=home)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def expected_table() -> dict:
    """The state table exactly as `rekey state init` creates it (its
    `--print`), with the template's TableName parameter for its name."""
    props = rekey_json("state", "init", "--print")["Resources"]["RekeyStateTable"]["Properties"]
    return {**props, "TableName": {"Ref": "TableName"}}


def runtime_actions() -> set[str]:
    """The DynamoDB actions `rekey policy` gives a runner (statement RekeyState)."""
    statements = rekey_json("policy")["Statement"]
    return {a for st in statements if st.get("Sid") == "RekeyState" for a in _as_list(st["Action"])}


def _as_list(x):
    return x if isinstance(x, list) else [x]


def cfn_policy_problems(template: dict) -> list[str]:
    p = []
    resources = template.get("Resources") or {}
    params = template.get("Parameters") or {}
    tables = [(n, r) for n, r in resources.items() if r.get("Type") == "AWS::DynamoDB::Table"]
    if len(tables) != 1:
        return [f"one AWS::DynamoDB::Table expected, found {len(tables)}"]
    name, table = tables[0]
    if (params.get("TableName") or {}).get("Default") != "rekey-state":
        p.append("parameter TableName must default to rekey-state")
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        if table.get(policy) != "Retain":
            p.append(f"{name}: {policy} must be Retain (the table holds the audit log)")
    props = table.get("Properties") or {}
    expected = expected_table()
    for field in sorted(set(props) | set(expected)):
        got, want = props.get(field), expected.get(field)
        # Order does not matter in these two lists: compare item by item.
        key = {"AttributeDefinitions": "AttributeName", "GlobalSecondaryIndexes": "IndexName"}.get(field)
        if key and isinstance(got, list) and all(isinstance(x, dict) for x in got):
            got_by, want_by = {x.get(key): x for x in got}, {x[key]: x for x in want}
            for item in sorted(set(got_by) | set(want_by), key=str):
                if got_by.get(item) != want_by.get(item):
                    p.append(f"{name}.{field} {item}: is {got_by.get(item)!r}, must be {want_by.get(item)!r}")
            if len(got) != len(got_by):
                p.append(f"{name}.{field}: a {key} appears twice")
        elif got != want:
            p.append(f"{name}.{field} is {got!r}, must be {want!r}")

    table_arn = {"Fn::GetAtt": [name, "Arn"]}
    index_arn = {"Fn::Sub": f"${{{name}.Arn}}/index/*"}
    statements = []
    roles = {n: r for n, r in resources.items() if r.get("Type") == "AWS::IAM::Role"}
    for role_name, role in roles.items():
        for pol in (role.get("Properties") or {}).get("Policies") or []:
            for st in _as_list(pol["PolicyDocument"].get("Statement", [])):
                if any(str(a).startswith("dynamodb:") for a in _as_list(st.get("Action", []))):
                    statements.append((role_name, st))
    if len(statements) != 1:
        p.append(f"one IAM statement with the DynamoDB actions expected, found {len(statements)}")
    else:
        role_name, st = statements[0]
        actions = runtime_actions()
        if set(_as_list(st.get("Action"))) != actions or st.get("Effect") != "Allow":
            p.append(f"{role_name}: DynamoDB actions must be exactly {sorted(actions)} (rekey policy)")
        resources_ = _as_list(st.get("Resource"))
        if table_arn not in resources_ or index_arn not in resources_ or len(resources_) != 2:
            p.append(f"{role_name}: DynamoDB actions must be on the table and its indexes only, are on {resources_!r}")
        task_defs = [r for r in resources.values() if r.get("Type") == "AWS::ECS::TaskDefinition"]
        if not task_defs or task_defs[0]["Properties"].get("TaskRoleArn") != {"Fn::GetAtt": [role_name, "Arn"]}:
            p.append(f"the task definition's TaskRoleArn must be {role_name}")
        managed = (roles[role_name].get("Properties") or {}).get("ManagedPolicyArns") or []
        if {"Ref": "RekeyPolicyArn"} not in managed or "RekeyPolicyArn" not in params:
            p.append(f"{role_name}: must attach the RekeyPolicyArn parameter's managed policy")
    for task_def in (r for r in resources.values() if r.get("Type") == "AWS::ECS::TaskDefinition"):
        for c in task_def["Properties"].get("ContainerDefinitions", []):
            argv = _as_list(c.get("EntryPoint", [])) + _as_list(c.get("Command", []))
            if argv != [REKEY_BIN, "run", "--once", "--log-format", "json"]:
                p.append(f"container {c.get('Name')}: must run {REKEY_BIN} run --once --log-format json, runs {argv!r}")
            env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
            if env.get("REKEY_CONFIG") != REKEY_CONFIG:
                p.append(f"container {c.get('Name')}: REKEY_CONFIG must be {REKEY_CONFIG}")
    schedules = [r for r in resources.values() if r.get("Type") in ("AWS::Scheduler::Schedule", "AWS::Events::Rule")]
    if len(schedules) != 1 or schedules[0]["Properties"].get("ScheduleExpression") not in (
            "rate(15 minutes)", "cron(0/15 * * * ? *)"):
        p.append("one schedule every 15 minutes expected (rate(15 minutes))")
    for param in ("Image", "Subnets", "SecurityGroup"):
        if param not in params:
            p.append(f"parameter {param} missing")
    return p


def check_cloudformation(paths=None) -> list[str]:
    paths = sorted(CFN_DIR.glob("*.yaml")) if paths is None else list(paths)
    if not paths:
        raise CheckError(f"no templates in {CFN_DIR}")
    tool = require_tool("cfn-lint")
    cmd = [tool, "--", *map(rel, paths)]
    notes = [f"cfn-lint: {tool_version(tool)}", "$ " + " ".join(cmd)]
    status, out = run_tool(cmd)
    # cfn-lint exits 2 on errors and 4 on warnings (or'd); informational
    # findings are not reported by default.
    if status != 0 or out:
        raise CheckError(f"cfn-lint (exit {status}):\n{out}")
    notes.append("cfn-lint: no errors, no warnings")
    # The table template `rekey state init --print` gives users, linted too.
    with tempfile.TemporaryDirectory() as d:
        printed = Path(d) / "rekey-state-table.json"
        printed.write_text(json.dumps(rekey_json("state", "init", "--print")))
        status, out = run_tool([tool, "--", str(printed)])
        if status != 0 or out:
            raise CheckError(f"cfn-lint on `rekey state init --print` (exit {status}):\n{out}")
    notes.append("cfn-lint: `rekey state init --print` clean too")
    problems = []
    for path in paths:
        template = load_cfn(path)
        if any(r.get("Type") == "AWS::DynamoDB::Table" for r in (template.get("Resources") or {}).values()) \
                or path.name == CFN_ECS.name:
            problems += [f"{path.name}: {x}" for x in cfn_policy_problems(template)]
    _fail_if(problems, "CloudFormation")
    notes.append(f"{CFN_ECS.name}: state table schema, its DynamoDB actions, task, 15-minute schedule")
    return notes


# --------------------------------------------------------------------------

CHECKS = {
    "systemd": check_systemd,
    "kubernetes": check_kubernetes,
    "cloudformation": check_cloudformation,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checks", nargs="*", metavar="CHECK",
                        help=f"what to check: {', '.join(CHECKS)} (default: all)")
    parser.add_argument("--systemd-fallback", action="store_true",
                        help="check the units with the Python parser even where systemd-analyze is")
    args = parser.parse_args(argv)
    checks = dict(CHECKS)
    if args.systemd_fallback:
        checks["systemd"] = lambda: check_systemd(use_analyze=False)
    unknown = [c for c in args.checks if c not in CHECKS]
    if unknown:
        parser.error(f"unknown check {unknown[0]!r}; one of {', '.join(CHECKS)}")
    passed = failed = 0
    for name in args.checks or list(CHECKS):
        print(f"== {name}", flush=True)
        try:
            for note in checks[name]():
                print(f"   {note}")
            print(f"ok {name}")
            passed += 1
        except CheckError as e:
            print(f"FAILED {name}: {e}")
            failed += 1
    print(f"deploy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
