"""A small client for the jobpipe API (requests only), with fallback URLs, and the `jobpipe` CLI."""
from jobpipe_client.client import JobpipeClient
from jobpipe_client.errors import (
    JobpipeAnswerError,
    JobpipeClientError,
    JobpipeError,
    JobpipeInputError,
    JobpipeUnavailableError,
    SubmitInterruptedError,
    SubmitOutcomeUnknownError,
    WaitTimeoutError,
)
from jobpipe_client.polling import Backoff, is_final

__all__ = [
    "Backoff",
    "JobpipeAnswerError",
    "JobpipeClient",
    "JobpipeClientError",
    "JobpipeError",
    "JobpipeInputError",
    "JobpipeUnavailableError",
    "SubmitInterruptedError",
    "SubmitOutcomeUnknownError",
    "WaitTimeoutError",
    "is_final",
]
