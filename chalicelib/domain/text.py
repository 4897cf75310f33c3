"""Text as the pipeline stores and serves it: Unicode characters only. A lone surrogate
(U+D800-U+DFFF on its own: `"\\ud800"` is valid JSON, and a Python str holds one after bytes were
decoded with `surrogateescape`) has no UTF-8 form: DynamoDB, SQS and EventBridge refuse it
(boto3 cannot even send it) and strict JSON readers refuse its escape. What a caller hands in
with one is refused; an error message, which is never refused, has each one replaced."""
from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# What every refusal of one says, after naming what holds it.
NOT_UNICODE = "holds a lone surrogate (\\ud800-\\udfff), which is no Unicode character"


def is_unicode(text: str) -> bool:
    """True when `text` has no lone surrogate (it encodes as UTF-8)."""
    return _LONE_SURROGATE.search(text) is None


def holds_lone_surrogate(value: Any) -> bool:
    """True when a string of JSON data `value` (dicts, lists, tuples; keys too) holds a lone
    surrogate. Walked without recursion, so data of any depth is looked at."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


def unicode_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, what a UTF-8 decoder shows for bytes
    it cannot read: the same length, every other character kept."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def unicode_data(value: Any) -> Any:
    """JSON data `value` with unicode_text applied to every string in it, keys too (dicts and
    lists rebuilt, tuples as lists; anything else as it is). For what an answer echoes back."""
    if isinstance(value, str):
        return unicode_text(value)
    if isinstance(value, dict):
        return {unicode_data(key): unicode_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [unicode_data(item) for item in value]
    return value
