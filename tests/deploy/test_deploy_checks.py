"""The deploy/ checks pass on the shipped examples and fail on broken
copies of them: no false passes. Standard library only (plus what
deploy_checks needs: PyYAML, and cfn-lint and kubernetes-validate on PATH,
whose absence fails these tests with the install command).

    python3 -m unittest discover -s tests/deploy -p 'test_*.py'
"""

import shutil
import tempfile
import unittest
from pathlib import Path

import deploy_checks as dc

HAVE_SYSTEMD_ANALYZE = shutil.which("systemd-analyze") is not None


class Broken:
    """A temporary copy of deploy files, some of them edited."""

    def __init__(self, test: unittest.TestCase, src_dir: Path, names: list[str]):
        self.dir = Path(tempfile.mkdtemp(prefix="rekey-deploy-test-"))
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.test = test
        for name in names:
            shutil.copy(src_dir / name, self.dir / name)

    def edit(self, name: str, old: str, new: str) -> "Broken":
        path = self.dir / name
        text = path.read_text()
        # An edit that matches nothing would test the shipped file.
        self.test.assertIn(old, text, f"{name} no longer has {old!r}: update this test")
        path.write_text(text.replace(old, new, 1))
        return self


UNITS = ["rekey.service", "rekey.timer"]

# (what, file, old, new): each makes the units invalid for systemd or for
# what deploy/README.md says of them.
SYSTEMD_BREAKAGES = [
    ("unknown directive", "rekey.service", "NoNewPrivileges=yes", "NoNewPrivilegs=yes"),
    ("unknown directive in the timer", "rekey.timer", "Persistent=true", "Persistant=true"),
    ("bad OnCalendar", "rekey.timer", "OnCalendar=*:0/15", "OnCalendar=*:0/15:xx"),
    ("out-of-range OnCalendar", "rekey.timer", "OnCalendar=*:0/15", "OnCalendar=*:75"),
    ("bad time span", "rekey.timer", "RandomizedDelaySec=5min", "RandomizedDelaySec=5 parsecs"),
    ("not a boolean", "rekey.service", "PrivateTmp=yes", "PrivateTmp=maybe"),
    ("bad enum value", "rekey.service", "ProtectSystem=strict", "ProtectSystem=stricter"),
    ("relative ExecStart", "rekey.service", "ExecStart=/usr/local/bin/rekey", "ExecStart=rekey"),
]
# Valid systemd, but not what the README promises: the parser's policy checks.
SYSTEMD_POLICY_BREAKAGES = [
    ("ProtectSystem weakened", "rekey.service", "ProtectSystem=strict", "ProtectSystem=full"),
    ("capabilities kept", "rekey.service", "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n"),
    ("runs as root", "rekey.service", "User=rekey", "User=root"),
    ("wider ReadWritePaths", "rekey.service", "ReadWritePaths=/var/lib/prometheus/node-exporter",
     "ReadWritePaths=/var/lib/prometheus/node-exporter /etc"),
    ("flag dropped", "rekey.service", " --log-format json", ""),
    ("hourly, not every 15 minutes", "rekey.timer", "OnCalendar=*:0/15", "OnCalendar=hourly"),
    ("not persistent", "rekey.timer", "Persistent=true", "Persistent=false"),
    ("no REKEY_CONFIG", "rekey.service", "Environment=REKEY_CONFIG=/etc/rekey/rekey.toml", "Environment=X=1"),
]


class SystemdChecks(unittest.TestCase):
    def check(self, unit_dir, analyze):
        return dc.check_systemd(unit_dir, use_analyze=analyze)

    def test_shipped_units_pass_the_fallback_parser(self):
        self.check(dc.SYSTEMD_DIR, False)

    @unittest.skipUnless(HAVE_SYSTEMD_ANALYZE, "systemd-analyze not on PATH")
    def test_shipped_units_pass_systemd_analyze(self):
        notes = self.check(dc.SYSTEMD_DIR, True)
        self.assertTrue(any("verify" in n for n in notes), notes)

    def assert_breakages_fail(self, breakages, analyze):
        for what, name, old, new in breakages:
            with self.subTest(what, analyze=analyze):
                broken = Broken(self, dc.SYSTEMD_DIR, UNITS).edit(name, old, new)
                with self.assertRaises(dc.CheckError):
                    self.check(broken.dir, analyze)

    def test_broken_units_fail_the_fallback_parser(self):
        self.assert_breakages_fail(SYSTEMD_BREAKAGES + SYSTEMD_POLICY_BREAKAGES, False)

    @unittest.skipUnless(HAVE_SYSTEMD_ANALYZE, "systemd-analyze not on PATH")
    def test_broken_units_fail_systemd_analyze(self):
        self.assert_breakages_fail(SYSTEMD_BREAKAGES + SYSTEMD_POLICY_BREAKAGES, True)

    @unittest.skipUnless(HAVE_SYSTEMD_ANALYZE, "systemd-analyze not on PATH")
    def test_systemd_analyze_itself_reports_an_unknown_directive(self):
        # Not only the parser's policy checks: the message is systemd's.
        broken = Broken(self, dc.SYSTEMD_DIR, UNITS).edit("rekey.service", "LockPersonality=yes", "LockPersonalty=yes")
        with self.assertRaisesRegex(dc.CheckError, "(?s)systemd-analyze verify.*Unknown key"):
            self.check(broken.dir, True)

    @unittest.skipUnless(HAVE_SYSTEMD_ANALYZE, "systemd-analyze not on PATH")
    def test_systemd_analyze_security_scores_a_weakened_sandbox(self):
        broken = Broken(self, dc.SYSTEMD_DIR, UNITS)
        for line in ("PrivateDevices=yes", "PrivateUsers=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                     "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "RestrictNamespaces=yes",
                     "SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
                     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "ProtectProc=invisible"):
            broken.edit("rekey.service", line + "\n", "")
        problems = dc.systemd_analyze_problems(broken.dir, shutil.which("systemd-analyze"), [])
        self.assertTrue(any(p.startswith("systemd-analyze security: exposure") for p in problems), problems)
        self.assertFalse(any("verify" in p for p in problems), problems)

    def test_calendar_parser(self):
        every_15 = {0, 15, 30, 45}
        for spec in ("*:0/15", "*:00/15", "*-*-* *:00/15:00", "*:0,15,30,45", "Mon..Sun *:0/15 UTC"):
            with self.subTest(spec):
                self.assertEqual(dc.parse_calendar(spec)["minute"], every_15)
        for spec in ("*:0/15:xx", "*:60", "25:00", "*:0/0", "Funday *:00", "*-13-01 00:00", "", "*:0/15 junk"):
            with self.subTest(spec), self.assertRaises(ValueError):
                dc.parse_calendar(spec)

    def test_timespan_parser(self):
        self.assertEqual(dc.parse_timespan("5min"), 300)
        self.assertEqual(dc.parse_timespan("1h 30s"), 3630)
        self.assertEqual(dc.parse_timespan("90"), 90)
        for bad in ("5 parsecs", "min", "", "1h,5m"):
            with self.subTest(bad), self.assertRaises(ValueError):
                dc.parse_timespan(bad)


MANIFEST = dc.K8S_MANIFEST.name
K8S_BREAKAGES = [
    # kubernetes-validate --strict: schema errors.
    ("unknown field", "readOnlyRootFilesystem: true", "readOnlyRootFilesytem: true"),
    ("wrong type", "backoffLimit: 0", 'backoffLimit: "none"'),
    ("field in the wrong place", "  concurrencyPolicy: Forbid", "  concurrencyPolicy: Forbid\n  restartPolicy: Never"),
    # kubernetes-validate only warns (exit 0) for a kind it has no schema for.
    ("removed apiVersion", "apiVersion: batch/v1\nkind: CronJob", "apiVersion: batch/v1beta1\nkind: CronJob"),
    ("misspelt kind", "kind: CronJob", "kind: CronJobs"),
    # Valid Kubernetes, but not what the README promises.
    ("capabilities kept", 'drop: ["ALL"]', 'drop: ["NET_RAW"]'),
    ("writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
    ("no IRSA role", "eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/rekey", "team: security"),
    ("root allowed", "runAsNonRoot: true\n                capabilities", "runAsNonRoot: false\n                capabilities"),
    ("no limits", "                limits:\n                  cpu: 500m\n                  memory: 128Mi\n", ""),
    ("sqlite state", 'backend = "dynamodb"', 'backend = "sqlite"'),
    ("config not mounted", "mountPath: /etc/rekey", "mountPath: /etc/rekey-config"),
    ("hourly", 'schedule: "*/15 * * * *"', 'schedule: "0 * * * *"'),
    ("not YAML", "kind: Namespace", "kind: [Namespace"),
]


class KubernetesChecks(unittest.TestCase):
    def test_shipped_manifest_passes(self):
        dc.check_kubernetes()

    def test_broken_manifests_fail(self):
        for what, old, new in K8S_BREAKAGES:
            with self.subTest(what):
                broken = Broken(self, dc.K8S_MANIFEST.parent, [MANIFEST]).edit(MANIFEST, old, new)
                with self.assertRaises(dc.CheckError):
                    dc.check_kubernetes(broken.dir / MANIFEST)

    def test_schema_error_is_reported_by_kubernetes_validate(self):
        broken = Broken(self, dc.K8S_MANIFEST.parent, [MANIFEST]).edit(
            MANIFEST, "ttlSecondsAfterFinished: 86400", "ttlSecondsAfterFinish: 86400")
        with self.assertRaisesRegex(dc.CheckError, "(?s)kubernetes-validate.*ttlSecondsAfterFinish"):
            dc.check_kubernetes(broken.dir / MANIFEST)


TEMPLATE = dc.CFN_ECS.name
CFN_BREAKAGES = [
    # cfn-lint: errors and warnings.
    ("unknown property", "      BillingMode: PAY_PER_REQUEST", "      BillingMode: PAY_PER_REQUEST\n      Bogus: 1"),
    ("bad enum", "LaunchType: FARGATE", "LaunchType: LAMBDA"),
    ("unresolved Ref", "Image: !Ref Image", "Image: !Ref ImageUri"),
    ("unused parameter (a warning)", "Parameters:\n", "Parameters:\n  Unused:\n    Type: String\n"),
    # The table rekey creates, exactly.
    ("projection", "ProjectionType: INCLUDE", "ProjectionType: ALL"),
    ("index renamed", "IndexName: audit_by_rotation", "IndexName: audit"),
    ("attribute type", "- AttributeName: seq\n          AttributeType: N", "- AttributeName: seq\n          AttributeType: S"),
    ("ttl attribute", "AttributeName: expires_at", "AttributeName: ttl"),
    ("no PITR", "PointInTimeRecoveryEnabled: true", "PointInTimeRecoveryEnabled: false"),
    ("not retained", "    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n    Properties:\n      TableName",
     "    UpdateReplacePolicy: Retain\n    Properties:\n      TableName"),
    ("default name", "Default: rekey-state", "Default: rekey"),
    # The task role's DynamoDB statement.
    ("action missing", "                  - dynamodb:ConditionCheckItem\n", ""),
    ("action too many", "                  - dynamodb:ConditionCheckItem\n",
     "                  - dynamodb:ConditionCheckItem\n                  - dynamodb:Scan\n"),
    ("indexes not covered", "                  - !Sub ${StateTable.Arn}/index/*\n", ""),
    ("no rekey policy", "        - !Ref RekeyPolicyArn\n", "        - !Sub arn:${AWS::Partition}:iam::aws:policy/ReadOnlyAccess\n"),
    ("hourly", "rate(15 minutes)", "rate(1 hour)"),
]


class CloudFormationChecks(unittest.TestCase):
    def test_shipped_template_passes(self):
        dc.check_cloudformation()

    def test_broken_templates_fail(self):
        for what, old, new in CFN_BREAKAGES:
            with self.subTest(what):
                broken = Broken(self, dc.CFN_DIR, [TEMPLATE]).edit(TEMPLATE, old, new)
                with self.assertRaises(dc.CheckError):
                    dc.check_cloudformation([broken.dir / TEMPLATE])

    def test_cfn_lint_reports_an_unknown_property(self):
        broken = Broken(self, dc.CFN_DIR, [TEMPLATE]).edit(
            TEMPLATE, "      BillingMode: PAY_PER_REQUEST", "      BillingMode: PAY_PER_REQUEST\n      Bogus: 1")
        with self.assertRaisesRegex(dc.CheckError, "(?s)cfn-lint.*Bogus"):
            dc.check_cloudformation([broken.dir / TEMPLATE])


class MissingTools(unittest.TestCase):
    def test_a_missing_tool_is_named(self):
        with self.assertRaisesRegex(dc.CheckError, "(?s)no-such-linter not found on PATH.*pip install"):
            dc.require_tool("no-such-linter")


if __name__ == "__main__":
    unittest.main()
