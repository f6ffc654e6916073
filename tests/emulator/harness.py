#!/usr/bin/env python3
"""AWS emulator harness for rekey's integration tests: the entry point.

Runs moto (in-process, threaded werkzeug server, loopback only) behind a WSGI
middleware (Harness, below) that:

* seeds IAM users/keys/tags from a scenario file directly through moto's
  backend objects (back-dated create dates, last-used data; the scenario is
  read by ``scenario.py`` and seeded by ``seeding.py``),
* writes a ground-truth JSON file computed with rekey's rotation rules
  (``truth.py``),
* rejects requests signed with an access key that is not an Active key of an
  existing IAM user (real AWS does, moto does not),
* counts every AWS request by ``service:Operation``,
* injects faults (Throttling, AccessDenied, ...) on demand (``faults.py``),
* serves Security Hub itself (IAM.3 findings synthesised from moto's IAM
  state, GetFindings filters, BatchUpdateFindings, BatchImportFindings;
  ``ext_securityhub.py``, with the store in ``securityhub.py``),
* holds several accounts: member accounts' users and roles, Organizations,
  and AssumeRole into them (``ext_accounts.py``, ``organizations.py``),
* records when SNS messages are published and shows what was published
  (``ext_sns.py``),
* records every AWS request it serves as a CloudTrail event and answers
  CloudTrail LookupEvents over them and seeded history (``ext_cloudtrail.py``,
  ``cloudtrail.py``),
* with --iam-auth, authorizes every request by the caller's IAM policies
  (``iam_auth.py``),
* serves control endpoints under ``/_rekey/``.

It also patches a few moto behaviours where moto differs from real IAM in a
way rekey cares about (``moto_patches.py``; the credential report in
``credential_report.py``). ``protocol.py`` holds what a request is and how
AWS errors look on the wire; ``paging.py`` the page tokens and rate windows
the service stores share. All of them sit beside this file, which is what
scripts and tests start.

Dependencies: Python 3.11 stdlib, moto 5.x, werkzeug. No network access.
See README.md in this folder for usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from datetime import datetime
from http import HTTPStatus
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

# Beside this file (see the docstring for what each holds).
import cloudtrail
import ext_accounts
import organizations
import securityhub
import seeding
from credential_report import ROOT_ACTIVE_KEY, ROOT_CREATED, credential_report_control
from ext_accounts import (ROOT_AGE, accounts_control, assume_role_extension, build_organizations,
                          organizations_extension, scenario_account_ids, seed_accounts)
from ext_cloudtrail import cloudtrail_control, cloudtrail_extension, record_request, seed_cloudtrail
from ext_securityhub import SECURITY_HUB, evaluate_securityhub, securityhub_control, securityhub_extension
from ext_sns import create_sns_topic, install_sns_capture, sns_control
from faults import HTML_ERROR_PAGE, Fault, drop_connection, parse_fault
from iam_auth import authorize, create_admin, install_iam_wildcards
from moto_patches import EMPTY_PAGES, EMPTY_PAGES_LOCK, install_moto_fidelity_patches
from protocol import (ACCOUNT_ENVIRON_KEY, Extension, HttpError, RequestInfo, account_param, aws_error,
                      inspect_request, invalid_credentials_error, read_body, request_account, status_line)
from scenario import DEFAULT_ACCOUNT_ID, InputError, fmt_time, load_scenario_file, parse_rfc3339
from seeding import existing_iam_backends, find_key, iam_backend, import_moto, is_active_user_key, last_used_parts, seed
from truth import compute_truth, compute_truth_file, write_json_atomic

EXIT_BAD_INPUT = 2

# Each may answer a request instead of moto (protocol.Extension), in this order.
EXTENSIONS: list[Extension] = [securityhub_extension, organizations_extension, assume_role_extension,
                               cloudtrail_extension]


# --------------------------------------------------------------------------
# WSGI middleware: strict credentials, counting, authorization, faults,
# extensions, recording; and the /_rekey/ control endpoints
# --------------------------------------------------------------------------


class Harness:
    def __init__(self, moto_app: Callable, as_of: datetime, max_age_days: int, warn_within_days: int,
                 iam_auth: bool = False):
        self.moto_app = moto_app
        self.iam_auth = iam_auth
        self.as_of = as_of
        self.max_age_days = max_age_days
        self.warn_within_days = warn_within_days
        self.lock = threading.Lock()
        self.dynamodb_lock = threading.Lock()
        self.verbose = False
        self.total = 0
        self.by_operation: dict[str, int] = {}
        self.by_account: dict[str, dict[str, int]] = {}  # account -> operation -> calls
        self.faults: list[Fault] = []

    # -- AWS traffic -------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/_rekey" or path.startswith("/_rekey/"):
            return self._respond(start_response, *self.control(environ, path))
        if path.startswith("/moto-api"):
            return self.moto_app(environ, start_response)

        body = read_body(environ)
        info = inspect_request(environ, body)
        account = environ[ACCOUNT_ENVIRON_KEY] = request_account(environ, info)
        start_response = self._recording(start_response, environ, info, account)
        with self.lock:
            self.total += 1
            self.by_operation[info.op_key] = self.by_operation.get(info.op_key, 0) + 1
            ops = self.by_account.setdefault(account, {})
            ops[info.op_key] = ops.get(info.op_key, 0) + 1

        # Strict credentials: a long-term key (AKIA...) must be an Active key
        # of an existing IAM user. Requests with a session token are STS
        # credentials; moto's GetSessionToken/GetFederationToken hand out the
        # fixed id AKIAIOSFODNN7EXAMPLE, so those pass through like ASIA keys.
        if info.access_key_id and info.access_key_id.startswith("AKIA") and not info.session_token:
            if not is_active_user_key(info.access_key_id):
                return self._respond(start_response, *invalid_credentials_error(info))

        if self.iam_auth:
            denied = authorize(environ, info, body, account)
            if denied is not None:
                return self._respond(start_response, *denied)

        fault = self._take_fault(info, account)
        if fault is not None:
            if fault.kind == "error":
                return self._respond(start_response, *aws_error(info, fault.code, fault.message, fault.status))
            if fault.kind == "drop":
                drop_connection(environ)
            if fault.kind == "lost":
                for _ in self._serve(environ, self._recording(lambda *_args: None, environ, info, account), info, body):
                    pass
                drop_connection(environ)
            if fault.kind == "garbled":
                return self._garbled(environ, start_response, info, body)
            if fault.kind == "html":
                page = HTML_ERROR_PAGE.format(status=fault.status, reason=HTTPStatus(fault.status).phrase).encode()
                return self._respond(start_response, fault.status, [("Content-Type", "text/html; charset=utf-8")], page)
            time.sleep(fault.delay)  # "slow"
        return self._serve(environ, start_response, info, body)

    def _garbled(self, environ: dict, start_response: Callable, info: RequestInfo, body: bytes) -> list[bytes]:
        answer: dict[str, Any] = {}

        def keep(status: str, headers: list, exc_info: Any = None) -> None:
            answer.update(status=status, headers=headers)

        data = b"".join(self._serve(environ, keep, info, body))
        half = data[:len(data) // 2]
        headers = [(k, v) for k, v in answer["headers"] if k.lower() != "content-length"]
        start_response(answer["status"], headers + [("Content-Length", str(len(half)))])
        return [half]

    def _serve(self, environ: dict, start_response: Callable, info: RequestInfo, body: bytes) -> Iterable[bytes]:
        """The answer of an extension, or moto's."""
        for ext in EXTENSIONS:
            answer = ext(self, environ, info, body)
            if answer is not None:
                return self._respond(start_response, *answer)

        if info.service == "dynamodb":
            # DynamoDB applies a transaction or a conditional write atomically;
            # moto checks conditions and writes in separate steps, so two
            # threads could both pass a condition. One DynamoDB request at a time.
            with self.dynamodb_lock:
                return list(self.moto_app(environ, start_response))
        return self.moto_app(environ, start_response)

    def _recording(self, start_response: Callable, environ: dict, info: RequestInfo,
                   account: str) -> Callable:
        """start_response that first records the request as a CloudTrail event,
        with the status of the answer (whoever gives it: moto, an extension,
        a fault or the credential check)."""
        recorded = False

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(environ, info, account, status)
            return start_response(status, headers, exc_info)

        return recording_start_response

    def _record(self, environ: dict, info: RequestInfo, account: str, status: str) -> None:
        try:
            record_request(environ, info, account, status)
        except Exception as e:  # recording must never break a request
            if self.verbose:
                print(f"harness: CloudTrail recording failed: {e!r}", file=sys.stderr, flush=True)

    def _take_fault(self, info: RequestInfo, account: str) -> Fault | None:
        now = time.monotonic()
        with self.lock:
            self.faults = [f for f in self.faults if not f.expired(now)]
            for i, f in enumerate(self.faults):
                if f.matches(info, account):
                    if f.use():
                        del self.faults[i]
                    return f
        return None

    @staticmethod
    def _respond(start_response: Callable, status: int, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
        headers = headers + [("Content-Length", str(len(body)))]
        start_response(status_line(status), headers)
        return [body]

    # -- /_rekey/ control endpoints ------------------------------------------

    def control(self, environ: dict, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        try:
            body_bytes = read_body(environ)
            if body_bytes.strip():
                try:
                    body = json.loads(body_bytes)
                except json.JSONDecodeError as e:
                    raise HttpError(400, f"body is not valid JSON: {e}") from None
            else:
                body = {}
            if method in ("POST", "PUT") and not isinstance(body, dict):
                raise HttpError(400, "body must be a JSON object")
            result = self.route(method, path[len("/_rekey"):], query, body)
            status, payload = 200, result
        except HttpError as e:
            status, payload = e.status, {"error": e.message}
        except InputError as e:
            status, payload = 400, {"error": str(e)}
        except (securityhub.ControlError, organizations.ControlError, cloudtrail.ControlError) as e:
            status, payload = e.status, {"error": e.message}
        data = json.dumps(payload).encode()
        return status, [("Content-Type", "application/json")], data

    def route(self, method: str, sub: str, query: dict[str, str], body: Any) -> dict:
        raw_account = query.get("account")
        account = account_param(raw_account)
        parts = [p for p in sub.split("/") if p]
        if parts == ["health"] and method == "GET":
            return {"ok": True}
        if parts[:1] == ["calls"]:
            return self.calls_control(method, parts[1:], raw_account)
        if parts == ["faults"]:
            if method == "POST":
                return self.add_fault(body)
            if method == "DELETE":
                with self.lock:
                    n = len(self.faults)
                    self.faults = []
                return {"cleared": n}
            if method == "GET":
                return {"faults": self.list_faults()}
        if parts[:1] == ["accounts"]:
            return accounts_control(method, parts[1:], body)
        if parts == ["keys"] and method == "GET":
            return self.get_keys(query.get("user"), account)
        if len(parts) == 2 and parts[0] == "keys" and method == "POST":
            return self.update_key(parts[1], body, account if raw_account is not None else None)
        if len(parts) == 2 and parts[0] == "users" and method == "POST":
            return self.update_user(parts[1], body, account)
        if parts[:1] == ["credential-report"] and method == "POST":
            return credential_report_control(parts[1:], body, account)
        if parts == ["iam", "empty-pages"] and method == "POST":
            count = body.get("count")
            if set(body) != {"count"} or not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
                raise HttpError(400, "body must be {\"count\": 0..1000}")
            with EMPTY_PAGES_LOCK:
                EMPTY_PAGES["left"] = count
            return {"count": count}
        if parts == ["root"] and method == "POST":
            active = body.get("access_key_active")
            if set(body) != {"access_key_active"} or not isinstance(active, bool):
                raise HttpError(400, "body must be {\"access_key_active\": true|false}")
            ROOT_ACTIVE_KEY[account] = active
            return {"access_key_active": active}
        if parts == ["truth"] and method == "GET":
            as_of = parse_rfc3339(query["as_of"], "as_of") if "as_of" in query else self.as_of
            try:
                max_age = int(query.get("max_age_days", self.max_age_days))
                warn = int(query.get("warn_within_days", self.warn_within_days))
            except ValueError:
                raise HttpError(400, "max_age_days and warn_within_days must be integers") from None
            return compute_truth(as_of, max_age, warn, account)
        if parts[:1] == ["securityhub"]:
            return securityhub_control(method, parts[1:], body, account, self.as_of, self.max_age_days)
        if parts[:1] == ["sns"]:
            return sns_control(method, parts[1:], query, body, account)
        if parts[:1] == ["cloudtrail"]:
            return cloudtrail_control(method, parts[1:], query, body, raw_account)
        raise HttpError(404, f"no harness endpoint {method} /_rekey{sub}")

    def calls_control(self, method: str, parts: list[str], account: str | None) -> dict:
        if parts == [] and method == "GET":
            with self.lock:
                if account is not None:
                    ops = self.by_account.get(account_param(account), {})
                    return {"account": account, "total": sum(ops.values()), "by_operation": dict(sorted(ops.items()))}
                return {"total": self.total, "by_operation": dict(sorted(self.by_operation.items())),
                        "by_account": {a: sum(ops.values()) for a, ops in sorted(self.by_account.items())}}
        if parts == ["reset"] and method == "POST":
            with self.lock:
                self.total = 0
                self.by_operation = {}
                self.by_account = {}
            return {"total": 0, "by_operation": {}, "by_account": {}}
        raise HttpError(404, f"no harness endpoint {method} /_rekey/calls/{'/'.join(parts)}")

    def add_fault(self, body: dict) -> dict:
        fault = parse_fault(body)
        with self.lock:
            self.faults.append(fault)
        return {"faults": self.list_faults()}

    def list_faults(self) -> list[dict]:
        now = time.monotonic()
        with self.lock:
            self.faults = [f for f in self.faults if not f.expired(now)]
            return [f.view(now) for f in self.faults]

    @staticmethod
    def key_view(key: Any) -> dict:
        at, svc, region = last_used_parts(key)
        return {
            "access_key_id": key.access_key_id,
            "user_name": key.user_name,
            "status": key.status,
            "created_at": fmt_time(key.create_date),
            "last_used_at": fmt_time(at),
            "last_used_service": svc,
            "last_used_region": region,
        }

    def get_keys(self, user_name: str | None, account: str) -> dict:
        backend = iam_backend(account)
        if user_name is not None:
            user = backend.users.get(user_name)
            if user is None:
                raise HttpError(404, f"no user {user_name!r} in account {account}")
            users = [user]
        else:
            users = list(backend.users.values())
        return {"keys": [self.key_view(k) for u in users for k in list(u.access_keys)]}

    def update_key(self, access_key_id: str, body: dict, account: str | None) -> dict:
        found = find_key(access_key_id, account)
        if found is None:
            raise HttpError(404, f"no access key {access_key_id}")
        _acct, _backend, key = found
        unknown = sorted(set(body) - {"created_at", "status", "last_used"})
        if unknown:
            raise HttpError(400, f"unknown field(s) {', '.join(unknown)}")
        created = parse_rfc3339(body["created_at"], "created_at") if "created_at" in body else None
        status = body.get("status")
        if status is not None and status not in ("Active", "Inactive"):
            raise HttpError(400, "status must be Active or Inactive")
        new_last_used: Any = key.last_used
        if "last_used" in body:
            lu = body["last_used"]
            if lu is None:
                new_last_used = None
            elif isinstance(lu, dict):
                if set(lu) - {"at", "service", "region"}:
                    raise HttpError(400, "last_used takes at, service, region")
                at = parse_rfc3339(lu.get("at"), "last_used.at")
                service = lu.get("service", "s3")
                region = lu.get("region", "us-east-1")
                if not isinstance(service, str) or not isinstance(region, str):
                    raise HttpError(400, "last_used.service and .region must be strings")
                new_last_used = seeding.moto_iam.AccessKeyLastUsed(timestamp=at, service=service, region=region)
            else:
                raise HttpError(400, "last_used must be an object or null")
        # all validated: apply
        if created is not None:
            key.create_date = created
        if status is not None:
            key.status = status
        key.last_used = new_last_used
        return self.key_view(key)

    def update_user(self, user_name: str, body: dict, account: str) -> dict:
        user = iam_backend(account).users.get(user_name)
        if user is None:
            raise HttpError(404, f"no user {user_name!r} in account {account}")
        unknown = sorted(set(body) - {"created_at"})
        if unknown:
            raise HttpError(400, f"unknown field(s) {', '.join(unknown)}")
        if "created_at" in body:
            user.create_date = parse_rfc3339(body["created_at"], "created_at")
        return {"user_name": user.name, "user_arn": user.arn, "created_at": fmt_time(user.create_date)}


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="moto-based AWS emulator for rekey tests")
    p.add_argument("--scenario", help="scenario JSON file (default: empty account)")
    p.add_argument("--as-of", help="RFC 3339 reference time; overrides the scenario's as_of")
    p.add_argument("--truth", help="write ground-truth JSON here before READY")
    p.add_argument("--ready-file", help="write {endpoint, port, pid, account_id} here (atomically) when ready")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port, 0 = any free port (default)")
    p.add_argument("--max-age-days", type=int, default=90)
    p.add_argument("--warn-within-days", type=int, default=14)
    p.add_argument("--watch-parent", action="store_true", help="exit when the parent process goes away")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.add_argument("--iam-auth", action="store_true",
                   help="authorize every request by the caller's IAM policies; the ready file gets an admin key")
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"harness: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = "127.0.0.1" if args.host == "localhost" else args.host
    try:
        if not ipaddress.ip_address(host).is_loopback:
            return fail(f"--host must be a loopback address, got {args.host!r}")
    except ValueError:
        return fail(f"--host must be a loopback IP address, got {args.host!r}")
    if not 0 <= args.port <= 65535:
        return fail("--port must be 0..65535")
    if args.max_age_days < 0 or args.warn_within_days < 0:
        return fail("--max-age-days and --warn-within-days must be >= 0")

    original_ppid = os.getppid()
    try:
        scenario = load_scenario_file(args.scenario, args.as_of)
        as_of, users = scenario.as_of, scenario.users
    except InputError as e:
        where = f"bad scenario {args.scenario}: " if args.scenario else ""
        return fail(f"{where}{e}")

    t0 = time.monotonic()
    import_moto()
    install_moto_fidelity_patches()
    from werkzeug.serving import WSGIRequestHandler, make_server

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    t1 = time.monotonic()
    ROOT_CREATED[DEFAULT_ACCOUNT_ID] = as_of - ROOT_AGE
    seed(users)
    seed_accounts(scenario)
    n_events = seed_cloudtrail(scenario, int(time.time()))
    ext_accounts.ORGANIZATIONS = build_organizations(scenario)
    install_sns_capture()
    for name in scenario.sns_topics:
        create_sns_topic(name)
    SECURITY_HUB.set_enabled(DEFAULT_ACCOUNT_ID, scenario.securityhub_enabled)
    for account_id in sorted({acct for acct, _backend in existing_iam_backends()}):
        evaluate_securityhub(account_id, as_of, args.max_age_days)
    t2 = time.monotonic()
    if args.truth:
        write_json_atomic(args.truth, compute_truth_file(as_of, args.max_age_days, args.warn_within_days,
                                                         scenario_account_ids(scenario)), indent=1)
    t3 = time.monotonic()
    if args.verbose:
        n_users = len(users) + sum(len(a.users) for a in scenario.accounts)
        print(f"harness: moto import {t1 - t0:.2f}s, seeded {n_users} users in {1 + len(scenario.accounts)} "
              f"account(s) (and their IAM.3 findings, {n_events} CloudTrail events) "
              f"in {t2 - t1:.2f}s, "
              f"truth {t3 - t2:.2f}s", file=sys.stderr, flush=True)

    verbose = args.verbose

    class Handler(WSGIRequestHandler):
        def log_request(self, *a: Any, **k: Any) -> None:
            if verbose:
                super().log_request(*a, **k)

    admin = None
    if args.iam_auth:
        install_iam_wildcards()
        admin = create_admin()
    app = Harness(DomainDispatcherApplication(create_backend_app), as_of, args.max_age_days, args.warn_within_days,
                  iam_auth=args.iam_auth)
    app.verbose = verbose
    try:
        server = make_server(host, args.port, app, threaded=True, request_handler=Handler)
    except OSError as e:
        return fail(f"cannot bind {host}:{args.port}: {e.strerror}")
    port = server.server_port
    endpoint = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serve_thread.start()

    if args.ready_file:
        ready = {"endpoint": endpoint, "port": port, "pid": os.getpid(), "account_id": DEFAULT_ACCOUNT_ID}
        if admin is not None:  # an emulator's made-up key, for the tests' admin requests
            ready["admin_access_key_id"], ready["admin_secret_access_key"] = admin
        write_json_atomic(args.ready_file, ready)
    print(f"READY {endpoint}", flush=True)
    if not verbose:
        # Nothing more goes to stdout: a parent that never drains the pipe must
        # not be able to block the server (moto prints now and then).
        sys.stdout = open(os.devnull, "w")

    next_parent_check = time.monotonic() + 0.5
    while not stop.wait(0.1):  # short waits: a signal is acted on within ~0.1 s
        if args.watch_parent and time.monotonic() >= next_parent_check:
            next_parent_check += 0.5
            if os.getppid() != original_ppid:  # re-parented: our parent died
                break
    server.shutdown()
    server.server_close()
    if args.ready_file:
        try:
            os.remove(args.ready_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (moto holds many objects, request threads may
    # still sit on keep-alive sockets): exit promptly with the code.
    os._exit(code)
