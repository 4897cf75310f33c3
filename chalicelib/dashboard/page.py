"""Assemble the dashboard page from its source files: `index.html` links `dashboard.css` and
names its scripts, each with `<script src="NAME.js"></script>`, in the order they run; the served
page carries the stylesheet and each script inline, in place, so it is one response with no
relative asset paths to get wrong under an API Gateway stage, and a Content-Security-Policy
that allows exactly those inline blocks (a hash each) and requests to the API's own origin."""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
STYLESHEET = "dashboard.css"
STYLESHEET_TAG = f'<link rel="stylesheet" href="{STYLESHEET}">'
SCRIPT_TAG = re.compile(r'<script src="([\w.-]+\.js)"></script>')


@dataclass(frozen=True)
class Page:
    html: str
    content_security_policy: str


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def scripts(html: str, assets: Path = ASSETS) -> list[str]:
    """The script files `html` (index.html's text) names, in its order. Raises ValueError when
    it names none, names one twice or one that is not in `assets`, when a `.js` file in `assets`
    is not named (it would never run), or when a script tag is not of the one form inlined."""
    named = SCRIPT_TAG.findall(html)
    if len(re.findall(r"<script\b", html, re.I)) != len(named):
        raise ValueError('index.html must name each script as <script src="NAME.js"></script> and nothing else')
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        raise ValueError(f"index.html names {', '.join(twice)} more than once")
    missing = [name for name in named if not (assets / name).is_file()]
    if missing:
        raise ValueError(f"index.html names {', '.join(missing)}, not in {assets}")
    unnamed = sorted(p.name for p in assets.glob("*.js") if p.name not in named)
    if unnamed:
        raise ValueError(f"{', '.join(unnamed)} in {assets} is not named in index.html: it would never run")
    if not named:
        raise ValueError('index.html names no script (<script src="NAME.js"></script>)')
    return named


def build_page(assets: Path = ASSETS) -> Page:
    """The page with its CSS and JS inlined. Raises ValueError if index.html lost the stylesheet's
    link tag, or its scripts and the folder's `.js` files disagree (see `scripts`)."""
    html = (assets / "index.html").read_text(encoding="utf-8")
    css = "\n" + (assets / STYLESHEET).read_text(encoding="utf-8")
    blocks = [(name, "\n" + (assets / name).read_text(encoding="utf-8")) for name in scripts(html, assets)]
    # A closing tag inside an inline block would end it early.
    for name, text, element in [(STYLESHEET, css, "style"), *((name, js, "script") for name, js in blocks)]:
        if f"</{element}" in text.lower():
            raise ValueError(f"{name} must not contain '</{element}' (it is inlined into the page)")
    if html.count(STYLESHEET_TAG) != 1:
        raise ValueError(f"index.html must contain {STYLESHEET_TAG!r} exactly once")
    # One pass over index.html: a block's own text is never read again as a tag to inline.
    inline = {STYLESHEET_TAG: f"<style>{css}</style>",
              **{f'<script src="{name}"></script>': f"<script>{js}</script>" for name, js in blocks}}
    html = re.sub("|".join(map(re.escape, inline)), lambda tag: inline[tag.group(0)], html)
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(_sha256(js) for _, js in blocks),
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
