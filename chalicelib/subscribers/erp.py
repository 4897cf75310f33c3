"""The ERP bridge: POST each status event to the ERP's webhook, signed, once per event."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any, Optional

from chalicelib.defaults import WEBHOOK_MIN_TIMEOUT_S, WEBHOOK_TRANSIENT_4XX
from chalicelib.defaults import SECRET_MIN_CHARS
from chalicelib.domain.numbers import length_rule
from chalicelib.domain.errors import WebhookDeliveryError, WebhookRefusedError
from chalicelib.ports import WebhookSender

SIGNATURE_HEADER = "X-Jobpipe-Signature"
EVENT_ID_HEADER = "X-Jobpipe-Event-Id"
# Who POSTs, as every HTTP client says: an ERP behind a web application firewall whose common
# rules block requests that name none (AWS WAF's core rule set does, with a 403) would refuse
# every event for good.
USER_AGENT = "jobpipe-erp-bridge"
EVENT_TYPE_HEADER = "X-Jobpipe-Event-Type"
# What a header value carries as it is: printable ASCII, no space at either end (a receiver
# strips it, and its id would then differ from the body's). http.client refuses a line break,
# cannot encode most non-ASCII text, and servers refuse control characters.
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>` — what the receiver recomputes to verify."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature or "")


class ErpBridge:
    def __init__(self, sender: WebhookSender, url: str, secret: str) -> None:
        """Raises WebhookDeliveryError when a URL is set with a secret under SECRET_MIN_CHARS:
        events are never sent unsigned or weakly signed (they wait on the queue instead)."""
        if url and len(secret) < SECRET_MIN_CHARS:
            raise WebhookDeliveryError(
                "ERP_WEBHOOK_SECRET " + length_rule("at least", SECRET_MIN_CHARS, len(secret), "ERP_WEBHOOK_URL is set"))
        self._sender = sender
        self._url = url
        self._secret = secret

    def request_for(self, detail: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The POST's body and headers. Raises WebhookRefusedError for an event whose `event_id`
        (or `event_type`) no header can carry as it is (a hand-made event's line break, control
        or non-ASCII character): it can never be delivered, so it is parked, not retried."""
        event_id, event_type = str(detail["event_id"]), str(detail.get("event_type", ""))
        for field, header, value in (("event_id", EVENT_ID_HEADER, event_id),
                                     ("event_type", EVENT_TYPE_HEADER, event_type)):
            if value and not _HEADER_VALUE.fullmatch(value):
                raise WebhookRefusedError(
                    f"event {detail['event_id']!r} cannot be sent to the ERP webhook: its {field} holds characters the "
                    f"{header} header cannot carry (printable ASCII only, no space at either end); nothing was POSTed",
                    details={"status": None, "field": field})
        body = json.dumps(detail, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(self._secret, body),
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event_type,
        }
        return body, headers

    def deliver(self, detail: dict[str, Any], within_s: Optional[float] = None) -> int:
        """POST the event, answered within `within_s` seconds (None: the sender's own timeout);
        returns the 2xx status. An event no header can carry (`request_for`) raises
        WebhookRefusedError, nothing sent. A 4xx that refuses the event for good (any but
        WEBHOOK_TRANSIENT_4XX) raises WebhookRefusedError, so the message is parked instead of
        retried; its message names the status, the reason phrase and the start of the answer's
        body. Any other answer, none in time, or less than WEBHOOK_MIN_TIMEOUT_S to wait for one
        (nothing is sent then) raises WebhookDeliveryError so the message is retried (with
        backoff, then dead-lettered); its details carry the answer's `status`, the
        `retry_after_s` the ERP asked for and, for a redirect, its `location`."""
        body, headers = self.request_for(detail)
        if within_s is not None and within_s < WEBHOOK_MIN_TIMEOUT_S:
            raise WebhookDeliveryError(
                f"too little of the invocation is left to POST event {detail['event_id']}; it is sent on its next delivery"
            )
        answer = self._sender.post(self._url, body, headers, timeout_s=within_s)
        if 400 <= answer.status < 500 and answer.status not in WEBHOOK_TRANSIENT_4XX:
            said = " ".join(part for part in (str(answer.status), answer.reason) if part)
            raise WebhookRefusedError(
                f"ERP webhook refused event {detail['event_id']}: HTTP {said}" + (f": {answer.text}" if answer.text else ""),
                details={"status": answer.status, "reason": answer.reason, "text": answer.text},
            )
        if not 200 <= answer.status < 300:
            # A redirect names where the ERP moved its webhook: what the operator sets ErpWebhookUrl to.
            moved = f": a redirect to {answer.location}, not followed" if answer.location else ""
            raise WebhookDeliveryError(
                f"ERP webhook answered {answer.status} for event {detail['event_id']}{moved}",
                details={"status": answer.status, "retry_after_s": answer.retry_after_s,
                         **({"location": answer.location} if answer.location else {})},
            )
        return answer.status
