"""A small client for the jobpipe API (requests only), with fallback URLs, and the `jobpipe` CLI.

The names below are imported when first used (`from jobpipe_client import JobpipeClient`
imports the client then): importing the package alone loads nothing, so the CLI's entry point
(cli_entry.py) takes Ctrl-C before requests and rich are loaded."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobpipe_client.client import JobpipeClient
    from jobpipe_client.errors import (
        ArtifactDownloadError,
        ClientRefusalError,
        JobpipeAnswerError,
        JobpipeClientError,
        JobpipeError,
        JobpipeInputError,
        JobpipeUnavailableError,
        ResultGoneError,
        SubmitInterruptedError,
        SubmitOutcomeUnknownError,
        WaitTimeoutError,
        WaitUnavailableError,
    )
    from jobpipe_client.polling import DEFAULT_GIVE_UP_AFTER_S, Backoff, Outage, is_final

# Each public name and the module of this package that defines it.
_HOMES = {
    "ArtifactDownloadError": "errors",
    "DEFAULT_GIVE_UP_AFTER_S": "polling",
    "Backoff": "polling",
    "ClientRefusalError": "errors",
    "JobpipeAnswerError": "errors",
    "JobpipeClient": "client",
    "JobpipeClientError": "errors",
    "JobpipeError": "errors",
    "JobpipeInputError": "errors",
    "JobpipeUnavailableError": "errors",
    "Outage": "polling",
    "ResultGoneError": "errors",
    "SubmitInterruptedError": "errors",
    "SubmitOutcomeUnknownError": "errors",
    "WaitTimeoutError": "errors",
    "WaitUnavailableError": "errors",
    "is_final": "polling",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use; AttributeError for any other."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next use is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
