"""The dashboard: one static page (HTML, CSS, JS in this folder) served at `GET /dashboard`."""
from chalicelib.dashboard.routes import dashboard

__all__ = ["dashboard"]
