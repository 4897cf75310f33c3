"""HTTP adapter of the WebhookSender port (stdlib only: nothing to bundle)."""
from __future__ import annotations

import urllib.error
import urllib.request

from chalicelib.domain.errors import WebhookDeliveryError


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: followed, a 301/302/303 would turn the POST into
    a body-less GET whose 2xx would count as delivered."""

    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirects)


class UrllibWebhookSender:
    def __init__(self, timeout_s: float = 5.0) -> None:
        """`timeout_s` bounds each POST: a batch of deliveries must fit the function's timeout."""
        self._timeout = timeout_s

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if not url.startswith(("https://", "http://")):
            raise WebhookDeliveryError(f"webhook URL must be http(s): {url[:100]!r}")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self._timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise WebhookDeliveryError(f"webhook unreachable: {exc}") from exc
