"""The harness side of SNS: when each message was published, and what.

moto keeps every message on its topic (Topic.sent_notifications); the
harness adds the time of publishing (install_sns_capture) and shows the
messages at GET /_rekey/sns/messages, and creates topics for the scenario
and POST /_rekey/sns/topics. See README.md ("SNS").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from protocol import HttpError
from scenario import DEFAULT_ACCOUNT_ID, SNS_TOPIC_RE, fmt_time, utc_now_whole

SNS_REGION = "us-east-1"
SNS_PUBLISHED_AT: dict[str, datetime] = {}  # message id -> when it was published (wall clock)


def install_sns_capture() -> None:
    from moto.sns.models import Topic

    orig_publish = Topic.publish

    def publish(self: Any, *a: Any, **k: Any) -> str:
        message_id = orig_publish(self, *a, **k)
        SNS_PUBLISHED_AT[message_id] = utc_now_whole()
        return message_id

    Topic.publish = publish


def create_sns_topic(name: str, account_id: str = DEFAULT_ACCOUNT_ID, region: str = SNS_REGION) -> str:
    from moto.sns.models import sns_backends

    attributes = {"FifoTopic": "true"} if name.endswith(".fifo") else {}
    return sns_backends[account_id][region].create_topic(name, attributes=attributes).arn


def sns_topic(topic: str, account_id: str) -> Any:
    """A moto Topic by ARN or by name (in account_id, us-east-1), or None."""
    from moto.sns.models import sns_backends

    arn = topic if topic.startswith("arn:") else f"arn:aws:sns:{SNS_REGION}:{account_id}:{topic}"
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sns" or parts[4] not in sns_backends:
        return None
    try:
        backend = sns_backends[parts[4]][parts[3]]
    except KeyError:  # not a region moto knows
        return None
    return backend.topics.get(arn)


def sns_attribute(value: Any) -> Any:
    """moto's {"Type", "Value"} back to the Publish shape {"DataType", "StringValue" | "BinaryValue"}."""
    if not isinstance(value, dict) or "Type" not in value:
        return value
    kind = "BinaryValue" if str(value["Type"]).startswith("Binary") else "StringValue"
    return {"DataType": value["Type"], kind: value.get("Value")}


def sns_message_view(notification: Any) -> dict:
    message_id, message, subject, attributes, group_id = (tuple(notification) + (None,) * 5)[:5]
    return {
        "MessageId": message_id,
        "Subject": subject,
        "Message": message,
        "MessageAttributes": {k: sns_attribute(v) for k, v in (attributes or {}).items()},
        "MessageGroupId": group_id,
        "PublishedAt": fmt_time(SNS_PUBLISHED_AT.get(message_id)),
    }


def sns_control(method: str, parts: list[str], query: dict[str, str], body: Any, account: str) -> dict:
    if parts == ["topics"] and method == "POST":
        name = body.get("name")
        if set(body) != {"name"} or not isinstance(name, str) or not SNS_TOPIC_RE.match(name):
            raise HttpError(400, "body must be {\"name\": NAME}: 1-256 chars of letters, digits, - and _ "
                                 "(optionally ending in .fifo)")
        return {"arn": create_sns_topic(name, account)}
    if parts == ["messages"] and method == "GET":
        if not query.get("topic"):
            raise HttpError(400, "query parameter topic (a topic ARN or name) is required")
        topic = sns_topic(query["topic"], account)
        if topic is None:
            raise HttpError(404, f"no SNS topic {query['topic']!r}")
        return {"topic_arn": topic.arn, "messages": [sns_message_view(n) for n in list(topic.sent_notifications)]}
    raise HttpError(404, f"no harness endpoint {method} /_rekey/sns/{'/'.join(parts)}")
