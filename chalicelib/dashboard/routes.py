"""`GET /dashboard`: the page itself needs no token; its API calls send the one the user gives."""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.dashboard.page import page

dashboard = Blueprint(__name__)


@dashboard.route("/dashboard", methods=["GET"], content_types=["*/*"])
def dashboard_page() -> Response:
    built = page()
    return Response(
        body=built.html,
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": built.content_security_policy,
            "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
