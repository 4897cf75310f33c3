"""A small client for the jobpipe API (requests only), with fallback URLs, and the `jobpipe` CLI."""
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

__all__ = [
    "ArtifactDownloadError",
    "DEFAULT_GIVE_UP_AFTER_S",
    "Backoff",
    "ClientRefusalError",
    "JobpipeAnswerError",
    "JobpipeClient",
    "JobpipeClientError",
    "JobpipeError",
    "JobpipeInputError",
    "JobpipeUnavailableError",
    "Outage",
    "ResultGoneError",
    "SubmitInterruptedError",
    "SubmitOutcomeUnknownError",
    "WaitTimeoutError",
    "WaitUnavailableError",
    "is_final",
]
