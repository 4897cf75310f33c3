"""The ERP webhook URL's rule: what the bridge's settings and a deploy's check both hold it to."""
from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

from chalicelib.defaults import WEBHOOK_URL_MAX_CHARS
from chalicelib.domain.numbers import length_rule


def webhook_url_problem(url: str) -> Optional[str]:
    """The rule `url` breaks, worded to follow the variable's name and never quoting the URL
    (it may hold credentials), or None: an http(s) URL with a host and a port from 1 to 65535
    (not a colon without one, nor an @ in its user part: the template's ErpWebhookUrl refuses those),
    no white space, in ASCII (Lambda's 4 KB of environment holds WEBHOOK_URL_MAX_CHARS
    characters of URL only in ASCII), at most WEBHOOK_URL_MAX_CHARS characters."""
    if len(url) > WEBHOOK_URL_MAX_CHARS:
        return length_rule("at most", WEBHOOK_URL_MAX_CHARS, len(url))
    if not url.isascii():
        return "must be in ASCII (a host's other characters in its xn-- form, a path's percent-encoded)"
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0  # raises ValueError past 65535 or for no number
    except ValueError:
        parts, port_ok = None, False
    if parts is None or not _authority_ok(parts.netloc) or parts.scheme not in ("http", "https") \
            or not parts.hostname or not port_ok or any(c.isspace() for c in url):
        return "must be an http(s) URL with a host, e.g. https://erp.example/hook"
    return None


def _authority_ok(netloc: str) -> bool:
    """Whether the URL's user part holds no @ and its host and port are as the template's
    ErpWebhookUrl pattern takes them: what urlsplit reads past (`host:` with no port, a bracket
    but around an IPv6 host) refused too."""
    user, _, host = netloc.rpartition("@")
    return "@" not in user and _HOST_PORT.fullmatch(host) is not None


# A host name or a bracketed IPv6 address, then an optional port (the template's pattern).
_HOST_PORT = re.compile(r"(?:[^\s/?#:@\[\]]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def shown_url(url: str, limit: int = 80) -> str:
    """`url` as a refusal may show it, so a typo can be found: without a user:password, a query
    or a fragment (where a URL carries its credentials), cut to `limit` characters."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return ""
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else f"{host}{parts.path}"
    return shown[:limit]
