"""Assemble the dashboard page from its source files: `index.html` links `dashboard.css` and
`dashboard.js`; the served page carries both inline, so it is one response with no relative
asset paths to get wrong under an API Gateway stage, and a Content-Security-Policy that
allows exactly those two inline blocks (by hash) and requests to the API's own origin."""
from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
STYLESHEET_TAG = '<link rel="stylesheet" href="dashboard.css">'
SCRIPT_TAG = '<script src="dashboard.js"></script>'


@dataclass(frozen=True)
class Page:
    html: str
    content_security_policy: str


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _inline(html: str, tag: str, replacement: str) -> str:
    if html.count(tag) != 1:
        raise ValueError(f"index.html must contain {tag!r} exactly once")
    return html.replace(tag, replacement)


def build_page(assets: Path = ASSETS) -> Page:
    """The page with its CSS and JS inlined. Raises ValueError if index.html lost a link tag."""
    html = (assets / "index.html").read_text(encoding="utf-8")
    css = "\n" + (assets / "dashboard.css").read_text(encoding="utf-8")
    js = "\n" + (assets / "dashboard.js").read_text(encoding="utf-8")
    # A closing tag inside an inline block would end it early.
    for name, text, element in (("dashboard.css", css, "style"), ("dashboard.js", js, "script")):
        if f"</{element}" in text.lower():
            raise ValueError(f"{name} must not contain '</{element}' (it is inlined into the page)")
    html = _inline(html, STYLESHEET_TAG, f"<style>{css}</style>")
    html = _inline(html, SCRIPT_TAG, f"<script>{js}</script>")
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sha256(js)}",
            f"style-src {_sha256(css)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return Page(html=html, content_security_policy=policy)


@functools.cache
def page() -> Page:
    """Built once per process (a warm Lambda serves it from memory)."""
    return build_page()
