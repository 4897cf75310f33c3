"""The dashboard page as the API serves it: one self-contained HTML response."""
import re
from html.parser import HTMLParser

import pytest

from chalicelib.dashboard.page import ASSETS, build_page

# Anything the browser would fetch from another origin: absolute or protocol-relative URLs in
# attributes, CSS url()/@import, or JS fetches and imports.
EXTERNAL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}|@import|url\(\s*['"]?(?!data:)""", re.I)


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(html):
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_dashboard_is_html_without_a_token(client):
    response = client.http.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<title>jobpipe dashboard</title>" in response.body.decode()


def test_dashboard_loads_nothing_from_outside(client):
    html = client.http.get("/dashboard").body.decode()
    assert not EXTERNAL.findall(html)
    for tag, attrs in parse(html):
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (tag, attrs)


def test_dashboard_inlines_its_own_css_and_js(client):
    response = client.http.get("/dashboard")
    html = response.body.decode()
    css = (ASSETS / "dashboard.css").read_text()
    js = (ASSETS / "dashboard.js").read_text()
    assert css in html and js in html
    assert '<link rel="stylesheet"' not in html and "<script src=" not in html
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert policy.count("'sha256-") == 2


def test_inline_blocks_match_the_policy_hashes():
    import base64
    import hashlib

    page = build_page()
    blocks = re.findall(r"<(script|style)>(.*?)</\1>", page.html, re.S)
    assert [kind for kind, _ in blocks] == ["style", "script"]
    for _, body in blocks:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in page.content_security_policy


def test_the_token_is_kept_per_tab_and_never_logged():
    js = (ASSETS / "dashboard.js").read_text()
    assert "sessionStorage" in js and "localStorage" not in js
    assert "console." not in js


def test_a_missing_link_tag_is_refused(tmp_path):
    for name in ("index.html", "dashboard.css", "dashboard.js"):
        (tmp_path / name).write_text((ASSETS / name).read_text())
    (tmp_path / "index.html").write_text((ASSETS / "index.html").read_text().replace('<script src="dashboard.js"></script>', ""))
    with pytest.raises(ValueError, match="dashboard.js"):
        build_page(tmp_path)
