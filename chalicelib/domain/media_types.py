"""Media types (RFC 9110 8.3.1), as an artifact's content type must be one: it is sent to S3 as
ContentType and served back as the artifact's Content-Type header, so nothing but a media type
(no CR/LF, no control character, no non-ASCII text) may get in."""
from __future__ import annotations

import re
from chalicelib.defaults import MAX_CONTENT_TYPE_CHARS

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
# type/subtype, then `; name=value` parameters whose value is a token or a quoted string.
MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*")

# Text in UTF-8: what an artifact written as a str is stored under, and what an inline artifact
# stored under no media type is served as.
UTF8_TEXT = "text/plain; charset=utf-8"


def is_media_type(value: object) -> bool:
    """True for text that is a media type of at most MAX_CONTENT_TYPE_CHARS characters."""
    return isinstance(value, str) and len(value) <= MAX_CONTENT_TYPE_CHARS and MEDIA_TYPE.fullmatch(value) is not None
