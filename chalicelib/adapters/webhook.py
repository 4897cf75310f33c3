"""HTTP adapter of the WebhookSender port (stdlib only: nothing to bundle)."""
from __future__ import annotations

import urllib.error
import urllib.request

from chalicelib.domain.errors import WebhookDeliveryError


class UrllibWebhookSender:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout = timeout_s

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if not url.startswith(("https://", "http://")):
            raise WebhookDeliveryError(f"webhook URL must be http(s): {url[:100]!r}")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise WebhookDeliveryError(f"webhook unreachable: {exc}") from exc
