"""AWS requests and answers on the wire, for the middleware and every extension.

What a request is (inspect_request: service, operation, protocol, access
key, region; REST and S3 calls by their API names), which account it acts
in (request_account) and who makes it (caller_arn); AWS errors in the shape
of each protocol (query, ec2, s3, json, rest-json); and the control
endpoints' HttpError and ?account= rule. An extension is a function that may
answer a request instead of moto (Extension); harness.py lists them.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qs

import securityhub  # beside this file: its 12-digit account id rule
import seeding  # beside this file: moto's IAM (seeding.moto_iam, once imported)
from scenario import DEFAULT_ACCOUNT_ID

INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."

# --------------------------------------------------------------------------
# Requests: what a request is, and its API name
# --------------------------------------------------------------------------

AUTH_CRED_RE = re.compile(r"Credential=([^,\s]+)")


@dataclass
class RequestInfo:
    service: str  # 4th part of the credential scope, or "unknown"
    operation: str  # Action / X-Amz-Target op / "METHOD /path"
    protocol: str  # query | ec2 | json | s3 | rest-json
    access_key_id: str | None
    session_token: bool = False  # request carries X-Amz-Security-Token
    json_content_type: str = "application/x-amz-json-1.1"
    region: str | None = None  # 3rd part of the credential scope
    parameters: dict | None = None  # what CloudTrail shows as requestParameters, where recorded

    @property
    def op_key(self) -> str:
        return f"{self.service}:{self.operation}"


def read_body(environ: dict) -> bytes:
    """Read wsgi.input fully and put an equivalent stream back for moto."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length_raw = environ.get("CONTENT_LENGTH") or ""
    if length_raw.strip():
        try:
            body = stream.read(int(length_raw))
        except ValueError:
            body = b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()  # chunked upload, already de-chunked by werkzeug
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


# Query-protocol calls whose parameters CloudTrail's event shows (as
# requestParameters, camelCase) and someone reads: an access key's status changes.
RECORDED_PARAMETERS = {"iam:UpdateAccessKey": ("UserName", "AccessKeyId", "Status")}


def inspect_request(environ: dict, body: bytes) -> RequestInfo:
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    akid = None
    scope_service = None
    scope_region = None
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = AUTH_CRED_RE.search(auth) if auth else None
    credential = m.group(1) if m else (query.get("X-Amz-Credential") or [None])[0]
    if credential:
        parts = credential.split("/")
        akid = parts[0] or None
        if len(parts) >= 5:
            scope_region, scope_service = parts[2], parts[3]
    elif query.get("AWSAccessKeyId"):  # SigV2 presigned URLs
        akid = query["AWSAccessKeyId"][0]

    session = bool(environ.get("HTTP_X_AMZ_SECURITY_TOKEN") or query.get("X-Amz-Security-Token"))
    target = environ.get("HTTP_X_AMZ_TARGET")
    content_type = environ.get("CONTENT_TYPE", "")
    if target:
        operation = target.rsplit(".", 1)[1] if "." in target else target  # the prefix may have dots
        service = scope_service or target.split(".", 1)[0].split("_")[0].lower()
        json_ct = "application/x-amz-json-1.0" if "json-1.0" in content_type else "application/x-amz-json-1.1"
        return RequestInfo(service, operation, "json", akid, session, json_ct, scope_region)

    action = None
    form: dict = {}
    if content_type.startswith("application/x-www-form-urlencoded") and body:
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            action = (form.get("Action") or [None])[0]
        except UnicodeDecodeError:
            action = None
    if action is None:
        form = query
        action = (query.get("Action") or [None])[0]
    service = scope_service or "unknown"
    if action:
        names = RECORDED_PARAMETERS.get(f"{service}:{action}")
        parameters = ({n[0].lower() + n[1:]: form[n][0] for n in names if form.get(n)} if names else None)
        return RequestInfo(service, action, "ec2" if service == "ec2" else "query", akid, session,
                           region=scope_region, parameters=parameters)
    if service == "s3":
        operation = s3_operation_name(environ, query)
    else:
        operation = f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}"
        operation = rest_operation_name(service, environ, operation)
    return RequestInfo(service, operation, "s3" if service == "s3" else "rest-json", akid, session,
                       region=scope_region)


# S3 REST calls by API name: (METHOD, sub-resource in the query) -> operation,
# for buckets and for objects; METHOD alone is the call without a sub-resource.
S3_BUCKET_OPERATIONS: dict[tuple[str, str | None], str] = {
    ("GET", None): "ListObjects", ("PUT", None): "CreateBucket", ("DELETE", None): "DeleteBucket",
    ("HEAD", None): "HeadBucket", ("POST", "delete"): "DeleteObjects", ("GET", "list-type"): "ListObjectsV2",
    ("GET", "versions"): "ListObjectVersions", ("GET", "uploads"): "ListMultipartUploads",
    ("GET", "location"): "GetBucketLocation", ("GET", "lifecycle"): "GetBucketLifecycleConfiguration",
    ("PUT", "lifecycle"): "PutBucketLifecycleConfiguration", ("DELETE", "lifecycle"): "DeleteBucketLifecycle",
    ("GET", "notification"): "GetBucketNotificationConfiguration",
    ("PUT", "notification"): "PutBucketNotificationConfiguration",
    ("GET", "publicAccessBlock"): "GetPublicAccessBlock", ("PUT", "publicAccessBlock"): "PutPublicAccessBlock",
    ("DELETE", "publicAccessBlock"): "DeletePublicAccessBlock",
}


S3_BUCKET_SUBRESOURCES = ("acl", "cors", "encryption", "logging", "ownershipControls", "policy", "replication",
                          "tagging", "versioning", "website", "accelerate", "requestPayment")


S3_OBJECT_OPERATIONS: dict[tuple[str, str | None], str] = {
    ("GET", None): "GetObject", ("PUT", None): "PutObject", ("DELETE", None): "DeleteObject",
    ("HEAD", None): "HeadObject", ("POST", "uploads"): "CreateMultipartUpload",
    ("POST", "uploadId"): "CompleteMultipartUpload", ("PUT", "uploadId"): "UploadPart",
    ("DELETE", "uploadId"): "AbortMultipartUpload", ("GET", "uploadId"): "ListParts",
    ("POST", "restore"): "RestoreObject", ("POST", "select"): "SelectObjectContent",
    ("GET", "attributes"): "GetObjectAttributes", ("GET", "acl"): "GetObjectAcl", ("PUT", "acl"): "PutObjectAcl",
    ("GET", "tagging"): "GetObjectTagging", ("PUT", "tagging"): "PutObjectTagging",
    ("DELETE", "tagging"): "DeleteObjectTagging", ("GET", "retention"): "GetObjectRetention",
    ("PUT", "retention"): "PutObjectRetention", ("GET", "legal-hold"): "GetObjectLegalHold",
    ("PUT", "legal-hold"): "PutObjectLegalHold",
}


S3_VIRTUAL_HOST_RE = re.compile(r"^(.+?)\.(?:s3[.-].*|localhost)$")


def s3_operation_name(environ: dict, query: dict[str, list[str]]) -> str:
    """An S3 REST call's API name (ListBuckets, PutObject, ...), path-style or
    virtual-hosted (bucket.localhost, bucket.s3...), else "METHOD /path"."""
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/") or "/"
    host = (environ.get("HTTP_HOST") or "").rsplit(":", 1)[0]
    virtual = S3_VIRTUAL_HOST_RE.match(host)
    rest = path.lstrip("/")
    if virtual:  # the bucket is in the host name; the path is the key
        parts = ["bucket", *([rest] if rest else [])]
    else:
        parts = [p for p in rest.split("/", 1) if p]
    if not parts:
        return "ListBuckets" if method == "GET" else f"{method} {path}"
    if len(parts) == 1:
        for sub in S3_BUCKET_SUBRESOURCES:
            if sub in query:
                verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method)
                return f"{verb}Bucket{sub[0].upper()}{sub[1:]}" if verb else f"{method} {path}"
        table = S3_BUCKET_OPERATIONS
    else:
        if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in environ:
            return "UploadPartCopy" if "uploadId" in query else "CopyObject"
        table = S3_OBJECT_OPERATIONS
    for (verb, sub), name in table.items():
        if verb == method and sub is not None and sub in query:
            return name
    return table.get((method, None), f"{method} {path}")


# --------------------------------------------------------------------------
# AWS errors, in the wire shape of each protocol
# --------------------------------------------------------------------------


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def aws_error(info: RequestInfo, code: str, message: str, status: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """An error response in the wire shape of the request's protocol."""
    rid = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", rid)]
    if info.protocol == "query":
        err_type = "Receiver" if status >= 500 else "Sender"
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{err_type}</Type><Code>{_xml_escape(code)}</Code>"
            f"<Message>{_xml_escape(message)}</Message>"
            f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    elif info.protocol == "ec2":
        body = (
            "<Response><Errors><Error>"
            f"<Code>{_xml_escape(code)}</Code><Message>{_xml_escape(message)}</Message>"
            f"</Error></Errors><RequestID>{rid}</RequestID></Response>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    elif info.protocol == "s3":
        body = (
            "<Error>"
            f"<Code>{_xml_escape(code)}</Code><Message>{_xml_escape(message)}</Message>"
            f"<RequestId>{rid}</RequestId></Error>"
        ).encode()
        headers.append(("Content-Type", "application/xml"))
    elif info.protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        headers.append(("Content-Type", info.json_content_type))
    else:  # rest-json
        body = json.dumps({"message": message}).encode()
        headers.append(("Content-Type", "application/json"))
        headers.append(("x-amzn-ErrorType", code))
    return status, headers, body


def invalid_credentials_error(info: RequestInfo) -> tuple[int, list[tuple[str, str]], bytes]:
    if info.protocol == "query":
        return aws_error(info, "InvalidClientTokenId", INVALID_TOKEN_MESSAGE, 403)
    if info.protocol == "json":
        return aws_error(info, "UnrecognizedClientException", INVALID_TOKEN_MESSAGE, 400)
    if info.protocol == "s3":
        return aws_error(info, "InvalidAccessKeyId",
                         "The AWS Access Key Id you provided does not exist in our records.", 403)
    if info.protocol == "ec2":
        return aws_error(info, "AuthFailure",
                         "AWS was not able to validate the provided access credentials", 401)
    return aws_error(info, "UnrecognizedClientException", INVALID_TOKEN_MESSAGE, 403)


# --------------------------------------------------------------------------
# Extension point. rest_operation_name() names REST calls (securityhub
# "POST /findings" -> "GetFindings") for counting and fault matching, and
# each function in harness.py's EXTENSIONS may answer a request instead of
# moto by returning (status, headers, body); None passes it on.
# --------------------------------------------------------------------------

REST_OPERATION_NAMES: dict[tuple[str, str, str], str] = {
    # (service, METHOD, path) -> Operation
    ("securityhub", "POST", "/findings"): "GetFindings",
    ("securityhub", "PATCH", "/findings/batchupdate"): "BatchUpdateFindings",
    ("securityhub", "POST", "/findings/import"): "BatchImportFindings",
    ("securityhub", "POST", "/accounts"): "EnableSecurityHub",
    ("securityhub", "DELETE", "/accounts"): "DisableSecurityHub",
    ("securityhub", "GET", "/accounts"): "DescribeHub",
}


def rest_operation_name(service: str, environ: dict, default: str) -> str:
    key = (service, environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/"))
    return REST_OPERATION_NAMES.get(key, default)


Extension = Callable[["Harness", dict, RequestInfo, bytes], "tuple[int, list[tuple[str, str]], bytes] | None"]

ACCOUNT_ENVIRON_KEY = "rekey.account"


def request_account(environ: dict, info: RequestInfo) -> str:
    """The account a request acts in, decided as moto decides it: the
    MOTO_ACCOUNT_ID variable, then an x-moto-account-id header, then the
    account whose IAM backend holds the access key (user keys, and the ASIA
    keys of AssumeRole credentials), else the default account. The harness
    decides it once per request and keeps it in the WSGI environ."""
    if ACCOUNT_ENVIRON_KEY in environ:
        return environ[ACCOUNT_ENVIRON_KEY]
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    if info.access_key_id:
        return seeding.moto_iam.get_account_id_from(info.access_key_id)
    return DEFAULT_ACCOUNT_ID


def json_object_body(body: bytes, invalid: Callable[[str], Exception]) -> dict:
    """A JSON request body (empty: {}); anything else raises `invalid`."""
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise invalid("harness: the request body is not a JSON object")
    return parsed


def json_answer(info: RequestInfo, payload: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("x-amzn-RequestId", str(uuid.uuid4())), ("Content-Type", info.json_content_type)]
    return 200, headers, json.dumps(payload).encode()


def query_params(environ: dict, body: bytes) -> dict[str, str]:
    """The parameters of a query-protocol request (query string, then form body)."""
    params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
    if (environ.get("CONTENT_TYPE") or "").startswith("application/x-www-form-urlencoded") and body:
        try:
            params.update({k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()})
        except UnicodeDecodeError:
            pass
    return params


def caller_arn(info: RequestInfo, account: str) -> str:
    """The caller's ARN, as GetCallerIdentity would give it."""
    from moto.sts.models import sts_backends

    backend = sts_backends[account]["aws"]
    _user_id, arn, _acct = backend.get_caller_identity(info.access_key_id or "", info.region or "us-east-1")
    return arn


# --------------------------------------------------------------------------
# Control endpoints (/_rekey/): their answers and errors
# --------------------------------------------------------------------------

STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
               404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests",
               500: "Internal Server Error", 503: "Service Unavailable"}


def status_line(status: int) -> str:
    return f"{status} {STATUS_TEXT.get(status, 'Status')}"


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def account_param(account: str | None) -> str:
    """A control endpoint's ?account=: 12 digits, default the default account."""
    if account is None:
        return DEFAULT_ACCOUNT_ID
    if not securityhub.ACCOUNT_RE.match(account):
        raise HttpError(400, f"account must be a 12-digit account id, got {account!r}")
    return account
