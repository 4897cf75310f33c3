"""The dashboard page as the API serves it: one self-contained HTML response."""
import json
import re
from html.parser import HTMLParser

import pytest

from chalicelib.dashboard.page import ASSETS, build_page, scripts

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


def named_scripts():
    """The script files index.html names, in its order."""
    return scripts((ASSETS / "index.html").read_text())


def all_js():
    return "\n".join((ASSETS / name).read_text() for name in named_scripts())


def test_dashboard_inlines_its_own_css_and_js(client):
    response = client.http.get("/dashboard")
    html = response.body.decode()
    css = (ASSETS / "dashboard.css").read_text()
    assert css in html
    for name in named_scripts():
        assert (ASSETS / name).read_text() in html, name
    assert '<link rel="stylesheet"' not in html and "<script src=" not in html
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert policy.count("'sha256-") == 1 + len(named_scripts())


def test_inline_blocks_match_the_policy_hashes_and_run_in_index_html_order():
    import base64
    import hashlib

    page = build_page()
    blocks = re.findall(r"<(script|style)>(.*?)</\1>", page.html, re.S)
    assert [kind for kind, _ in blocks] == ["style"] + ["script"] * len(named_scripts())
    assert [body for kind, body in blocks if kind == "script"] == [
        "\n" + (ASSETS / name).read_text() for name in named_scripts()]
    for _, body in blocks:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in page.content_security_policy


def test_every_script_file_is_named_in_index_html():
    assert sorted(named_scripts()) == sorted(p.name for p in ASSETS.glob("*.js"))


def test_each_script_says_what_it_holds_and_runs_strict():
    """The scripts are classic scripts, each its own block: "use strict" holds only for the file
    that opens with it (after its header comment)."""
    for name in named_scripts():
        lines = (ASSETS / name).read_text().splitlines()
        assert lines[0].startswith("// jobpipe dashboard: "), name
        assert next(line for line in lines if not line.startswith("//")) == '"use strict";', name

NAMES = r"[\w$]+"


def test_each_script_takes_from_jobpipe_only_what_a_script_adds():
    """Each file is one function over `jobpipe`, the page's only global (state.js makes it): the
    names it takes at its start were added by a file before it, and every other `jobpipe.NAME`
    it reads (a later file's, when called) is added by some file."""
    added: dict[str, str] = {}
    taken: list[tuple[str, str, bool]] = []  # (file, name, at its start)
    for index, name in enumerate(named_scripts()):
        js = (ASSETS / name).read_text()
        opening = "(function (jobpipe) {\n"
        closing = "})(window.jobpipe = {});\n" if index == 0 else "})(window.jobpipe);\n"
        assert js.count(opening) == 1 and js.index(opening) < js.index("\n\n", js.index('"use strict";')) + 3, name
        assert js.endswith(closing), name
        start = re.match(r"var ((?:[\w$]+ = jobpipe\.[\w$]+(?:,\s*)?)+);", js[js.index(opening) + len(opening):])
        imports = re.findall(rf"({NAMES}) = jobpipe\.({NAMES})", start.group(1)) if start else []
        assert all(local == remote for local, remote in imports), (name, imports)
        taken += [(name, remote, True) for _, remote in imports]
        exports = re.search(r"\nObject\.assign\(jobpipe, \{(.*?)\}\);\n\}\)", js, re.S)
        pairs = re.findall(rf"({NAMES}): ({NAMES})", exports.group(1)) if exports else []
        assert all(key == value for key, value in pairs), (name, pairs)
        for key, _ in pairs:
            assert key not in added, f"{key} is added by {added[key]} and {name}"
            added[key] = name
        body = js[start.end() if start else 0:exports.start() if exports else len(js)]
        taken += [(name, used, False) for used in re.findall(rf"(?<![\w.\"'`])jobpipe\.({NAMES})", body)]  # not in text
    order = named_scripts()
    for name, used, at_start in taken:
        assert used in added, f"{name} takes jobpipe.{used}, which no script adds"
        if at_start:
            assert order.index(added[used]) < order.index(name), f"{name} takes {used} at its start, before {added[used]} runs"


def test_the_token_is_kept_per_tab_and_never_logged():
    js = all_js()
    assert "sessionStorage" in js and "localStorage" not in js
    assert "console." not in js


def copy_assets(tmp_path, html=lambda text: text):
    """The dashboard's files in `tmp_path`, index.html passed through `html`."""
    for path in [ASSETS / "index.html", ASSETS / "dashboard.css", *ASSETS.glob("*.js")]:
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "index.html").write_text(html((ASSETS / "index.html").read_text()))
    return tmp_path


def tag(name):
    return f'<script src="{name}"></script>'


def test_a_missing_link_tag_is_refused(tmp_path):
    copy_assets(tmp_path, lambda text: text.replace('<link rel="stylesheet" href="dashboard.css">', ""))
    with pytest.raises(ValueError, match="dashboard.css"):
        build_page(tmp_path)


def test_a_script_file_index_html_does_not_name_is_refused(tmp_path):
    first, *_ = named_scripts()
    copy_assets(tmp_path, lambda text: text.replace(tag(first), ""))
    with pytest.raises(ValueError, match=re.escape(first) + ".* not named in index.html"):
        build_page(tmp_path)
    copy_assets(tmp_path)
    (tmp_path / "extra.js").write_text("var extra = 1;\n")
    with pytest.raises(ValueError, match="extra.js .* not named in index.html"):
        build_page(tmp_path)


def test_a_script_index_html_names_but_the_folder_lacks_is_refused(tmp_path):
    last = named_scripts()[-1]
    copy_assets(tmp_path)
    (tmp_path / last).unlink()
    with pytest.raises(ValueError, match=f"index.html names {re.escape(last)}, not in"):
        build_page(tmp_path)
    copy_assets(tmp_path, lambda text: text.replace(tag(last), tag(last) + "\n" + tag("gone.js")))
    with pytest.raises(ValueError, match="index.html names gone.js, not in"):
        build_page(tmp_path)


def test_a_script_named_twice_or_in_another_form_is_refused(tmp_path):
    last = named_scripts()[-1]
    copy_assets(tmp_path, lambda text: text.replace(tag(last), tag(last) * 2))
    with pytest.raises(ValueError, match=f"names {re.escape(last)} more than once"):
        build_page(tmp_path)
    for other in (f'<script defer src="{last}"></script>', "<script>start();</script>"):
        copy_assets(tmp_path, lambda text: text.replace("</body>", other + "\n</body>"))
        with pytest.raises(ValueError, match="must name each script as"):
            build_page(tmp_path)
    copy_assets(tmp_path, lambda text: re.sub(r"<script src=[^>]*></script>", "", text))
    for path in tmp_path.glob("*.js"):
        path.unlink()
    with pytest.raises(ValueError, match="index.html names no script"):
        build_page(tmp_path)


def test_a_closing_tag_inside_a_script_is_refused(tmp_path):
    last = named_scripts()[-1]
    copy_assets(tmp_path)
    (tmp_path / last).write_text((ASSETS / last).read_text() + '\nvar end = "</script>";\n')
    with pytest.raises(ValueError, match=f"{re.escape(last)} must not contain '</script'"):
        build_page(tmp_path)


def test_the_details_call_kept_in_s3_only_what_the_store_keeps_there(client):
    """A listing or poll shows a payload or result kept in S3 as `{"claim_check": {"bytes": n}}`,
    and a poll whose jobs together would pass what one answer carries shows some of them short,
    a value kept in the job's record as the same placeholder: the details said "kept in S3" of
    both. The page tells them apart by size, by the store's own bound: a payload of exactly
    INLINE_LIMIT_BYTES (its compact JSON, as the placeholder counts it) stays in the record, one
    a byte larger goes to S3 and is listed as its placeholder."""
    from chalicelib.defaults import INLINE_LIMIT_BYTES
    from tests.functional.conftest import auth, submit_job

    assert int(re.search(r"\nvar INLINE_MAX_BYTES = (\d+);", (ASSETS / "state.js").read_text()).group(1)) \
        == INLINE_LIMIT_BYTES
    assert 'check.bytes > INLINE_MAX_BYTES ? "kept in S3 (" :' in (ASSETS / "rows.js").read_text()
    frame = len(json.dumps({"artifact_bytes": 0, "result_bytes": 0, "pad": ""}, separators=(",", ":")))
    kept, past = (submit_job(client, {"type": "demo.outputs", "payload": {"pad": "x" * (INLINE_LIMIT_BYTES - frame + more)}})
                  for more in (0, 1))
    listed = {job["id"]: job["payload"] for job in client.http.get("/jobs", headers=auth()).json_body["jobs"]}
    assert listed[kept["id"]] == kept["payload"]
    assert listed[past["id"]] == {"claim_check": {"bytes": INLINE_LIMIT_BYTES + 1}}
