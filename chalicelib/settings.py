"""Settings: read from the environment once, validated, in this module only."""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from chalicelib import defaults
from chalicelib.defaults import redelivery_wait_s
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.webhook_url import webhook_url_problem


class Settings(BaseModel):
    # The signing keys are settings too: a refusal (chained to SettingsError, logged with its
    # cause) names each variable and what is wrong, never the values read; repr hides the keys.
    model_config = ConfigDict(hide_input_in_errors=True)

    table_name: str = Field(min_length=3)
    idempotency_table_name: str = Field(min_length=3)
    queue_url_high: str = Field(min_length=1)
    queue_url_normal: str = Field(min_length=1)
    queue_url_low: str = Field(min_length=1)
    dead_letter_url: str = Field(min_length=1)
    dead_letter_url_high: Optional[str] = None  # per-priority DLQs; unset falls back to dead_letter_url
    dead_letter_url_low: Optional[str] = None
    stats_table_name: Optional[str] = None
    # The other dead-letter queues operators see and redrive (the API function only).
    erp_webhook_queue_url: Optional[str] = None
    erp_webhook_dlq_url: Optional[str] = None
    erp_outbound_queue_url: Optional[str] = None
    erp_outbound_dlq_url: Optional[str] = None
    cache_queue_url: Optional[str] = None
    cache_dlq_url: Optional[str] = None
    event_delivery_dlq_url: Optional[str] = None
    stream_failure_queue_url: Optional[str] = None
    bucket_name: Optional[str] = None
    use_task_queue: bool = True
    # Only the API function gets the token secret (the template's per-function environment):
    # None elsewhere, and `require_auth_secret` fails clearly where it is needed but missing.
    auth_secret: Optional[str] = Field(default=None, min_length=defaults.SECRET_MIN_CHARS,
                                       max_length=defaults.SECRET_MAX_CHARS, repr=False)
    # A token may live at most this long (exp - iat, or exp - now without iat).
    token_max_lifetime_s: int = Field(default=defaults.TOKEN_MAX_LIFETIME_S, ge=60, le=30 * 86400)
    token_issuer: str = Field(default="", max_length=defaults.TOKEN_CLAIM_MAX_CHARS)
    token_audience: str = Field(default="", max_length=defaults.TOKEN_CLAIM_MAX_CHARS)
    # demo.* job types (demo.chaos kills its worker process on purpose): demos and tests only.
    demo_job_types: bool = False
    # Admission at submit: each tenant's unfinished jobs at most this many (0: no bound).
    tenant_max_unfinished_jobs: int = Field(default=defaults.TENANT_MAX_UNFINISHED_JOBS, ge=0)
    # At most the default (defaults.py says why): a larger body would not reach the function.
    max_body_bytes: int = Field(default=defaults.MAX_BODY_BYTES, ge=1024, le=defaults.MAX_BODY_BYTES)
    inline_limit_bytes: int = Field(default=defaults.INLINE_LIMIT_BYTES, ge=1024, le=128 * 1024)
    retention_days: int = Field(default=defaults.RETENTION_DAYS, ge=1, le=defaults.RETENTION_MAX_DAYS)
    retry_base_s: int = Field(default=defaults.JOB_RETRY_BASE_S, ge=1, le=900)
    idempotency_ttl_s: int = Field(default=defaults.IDEMPOTENCY_TTL_S, ge=60)
    event_bus_name: str = Field(default="default", min_length=1)
    progress_min_interval_s: float = Field(default=defaults.PROGRESS_MIN_INTERVAL_S, ge=0,
                                           le=defaults.PROGRESS_MIN_INTERVAL_MAX_S)
    # How long a queued job may wait for a worker past its start before the reconciler sends
    # its message again (doubling after each resend).
    dispatch_grace_s: int = Field(default=defaults.DISPATCH_GRACE_S, ge=1, le=24 * 3600)
    # How many messages a queued job's next attempt is sent, none claimed, before it fails
    # `undeliverable` (defaults.MAX_DISPATCHES).
    max_dispatches: int = Field(default=defaults.MAX_DISPATCHES, ge=2, le=1000)
    # First wait before a failed delivery (worker, ERP bridge, cache consumer) comes back.
    redelivery_base_s: int = Field(default=defaults.DELIVERY_RETRY_BASE_S, ge=1, le=defaults.SQS_MAX_DELAY_S)
    # Longest wait between two deliveries; with the consumer queues' 100 receives, 900 s gives
    # about 24 h of retries before an event is dead-lettered (a lower cap: proportionally less).
    redelivery_max_s: int = Field(default=defaults.DELIVERY_RETRY_MAX_S, ge=1, le=defaults.SQS_MAX_DELAY_S)
    # AWS calls: every function's clients are sized to the function. The API's must answer
    # inside API Gateway's 29 s (1 s connect, 3 s read, 2 tries: ~8 s a call whose tries all time
    # out, 14 s with botocore's wait between them at its longest); the reconciler's the same, so a
    # pass ends inside its 120 s (defaults.RECONCILE_PASS_MARGIN_S); the defaults fit the workers'
    # and consumers' longer timeouts.
    aws_connect_timeout_s: float = Field(default=defaults.AWS_CONNECT_TIMEOUT_S, gt=0, le=60)
    aws_read_timeout_s: float = Field(default=defaults.AWS_READ_TIMEOUT_S, gt=0, le=300)
    aws_max_attempts: int = Field(default=defaults.AWS_MAX_ATTEMPTS, ge=1, le=10)
    # Only the ERP bridge function gets these (the template's per-function environment).
    # Empty: none (the defaults are not validated, and an empty variable keeps the default).
    erp_webhook_url: str = ""  # held to domain.webhook_url's rule, as a deploy holds ErpWebhookUrl
    erp_webhook_secret: str = Field(default="", min_length=defaults.SECRET_MIN_CHARS,
                                    max_length=defaults.SECRET_MAX_CHARS, repr=False)
    # True when the ERP deduplicates on the signed body's event_id: the bridge then keeps no delivery
    # ledger (no requests, no writes) and delivers at least once; false: exactly once on it.
    erp_receiver_deduplicates: bool = False
    # Off in production. The benchmark logs every AWS request; the reliability suites make
    # EventBridge refuse this fraction of PutEvents entries, SendMessage lose its connection
    # and a worker's claim write be throttled on this fraction of calls.
    count_aws_requests: bool = False
    fault_put_events_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_send_message_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_claim_failure_rate: float = Field(default=0.0, ge=0, le=1)

    @field_validator("auth_secret")
    @classmethod
    def _not_placeholder(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (value.strip() != value or not value.strip()):
            raise ValueError("must not be blank or padded")
        return value

    @field_validator("token_issuer", "token_audience")
    @classmethod
    def _printable_ascii(cls, value: str) -> str:
        if not all(" " <= c <= "~" for c in value):  # the template's AllowedPattern
            raise ValueError("must be printable ASCII")
        return value

    @field_validator("redelivery_max_s")
    @classmethod
    def _cap_not_below_base(cls, value: int, info: ValidationInfo) -> int:
        # A cap under the first wait would make every redelivery wait the cap, not back off.
        base = info.data.get("redelivery_base_s")
        if base is not None and value < base:
            raise ValueError(f"must be at least JOBPIPE_REDELIVERY_BASE_S ({shown_number(base)}), "
                             "the first wait before a redelivery")
        return value

    @field_validator("erp_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        problem = webhook_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def require_auth_secret(self) -> str:
        """The token secret; raises SettingsError in a function deployed without it."""
        if not self.auth_secret:
            raise SettingsError("JOBPIPE_AUTH_SECRET is not set: only the API function authenticates tokens")
        return self.auth_secret

    def require_webhook(self) -> tuple[str, str]:
        """(url, secret) of the ERP webhook; raises SettingsError in a function deployed without
        them: an unsigned delivery would be worse than none."""
        if not self.erp_webhook_url or not self.erp_webhook_secret:
            raise SettingsError(
                "ERP_WEBHOOK_URL and ERP_WEBHOOK_SECRET must both be set: only the ERP bridge delivers webhooks"
            )
        return self.erp_webhook_url, self.erp_webhook_secret

    def redelivery_wait_s(self, receives: int) -> int:
        """How long a failed delivery received `receives` times waits before the next one, on
        this stack's base and cap (every consumer of a queue backs off the same way)."""
        return redelivery_wait_s(receives, self.redelivery_base_s, self.redelivery_max_s)

    @property
    def queue_urls(self) -> dict[str, str]:
        return {"high": self.queue_url_high, "normal": self.queue_url_normal, "low": self.queue_url_low}

    @property
    def other_dead_letters(self) -> dict[str, tuple[str, Optional[str]]]:
        """name -> (DLQ URL, the queue its messages are redriven to, or None), where configured.
        Every dead-letter queue but the jobs queues' is named here, or no route sees it
        (tests/unit/test_dead_letter_settings.py names one that is not)."""
        pairs = {
            "erp_webhook": (self.erp_webhook_dlq_url, self.erp_webhook_queue_url),
            "erp_outbound": (self.erp_outbound_dlq_url, self.erp_outbound_queue_url),
            "cache_invalidation": (self.cache_dlq_url, self.cache_queue_url),
            # Events EventBridge could not deliver to a subscriber queue: each goes back to the
            # queue its TARGET_ARN attribute names (targeted_dead_letters).
            "event_delivery": (self.event_delivery_dlq_url, None),
            # Descriptions of stream batches given up on (shard and sequence range), not events.
            defaults.STREAM_FAILURE_QUEUE: (self.stream_failure_queue_url, None),
        }
        return {name: pair for name, pair in pairs.items() if pair[0]}

    @property
    def targeted_dead_letters(self) -> dict[str, list[str]]:
        """DLQ name -> the queues its messages name as their target, which a redrive returns them to:
        every queue a rule of the bus sends to (tests/unit/test_dead_letter_settings.py)."""
        return {"event_delivery": [url for url in (self.erp_webhook_queue_url, self.erp_outbound_queue_url,
                                                   self.cache_queue_url) if url]}

    @property
    def dead_letter_urls(self) -> dict[str, str]:
        return {
            "high": self.dead_letter_url_high or self.dead_letter_url,
            "normal": self.dead_letter_url,
            "low": self.dead_letter_url_low or self.dead_letter_url,
        }


_ENV = {
    "table_name": "JOBPIPE_TABLE",
    "idempotency_table_name": "JOBPIPE_IDEMPOTENCY_TABLE",
    "queue_url_high": "JOBPIPE_QUEUE_URL_HIGH",
    "queue_url_normal": "JOBPIPE_QUEUE_URL_NORMAL",
    "queue_url_low": "JOBPIPE_QUEUE_URL_LOW",
    "dead_letter_url": "JOBPIPE_DLQ_URL",
    "dead_letter_url_high": "JOBPIPE_DLQ_URL_HIGH",
    "dead_letter_url_low": "JOBPIPE_DLQ_URL_LOW",
    "stats_table_name": "JOBPIPE_STATS_TABLE",
    "erp_webhook_queue_url": "JOBPIPE_ERP_WEBHOOK_QUEUE_URL",
    "erp_webhook_dlq_url": "JOBPIPE_ERP_WEBHOOK_DLQ_URL",
    "erp_outbound_queue_url": "JOBPIPE_ERP_OUTBOUND_QUEUE_URL",
    "erp_outbound_dlq_url": "JOBPIPE_ERP_OUTBOUND_DLQ_URL",
    "cache_queue_url": "JOBPIPE_CACHE_QUEUE_URL",
    "cache_dlq_url": "JOBPIPE_CACHE_DLQ_URL",
    "event_delivery_dlq_url": "JOBPIPE_EVENT_DELIVERY_DLQ_URL",
    "stream_failure_queue_url": "JOBPIPE_STREAM_FAILURE_QUEUE_URL",
    "bucket_name": "JOBPIPE_BUCKET",
    "use_task_queue": "USE_TASK_QUEUE",  # the name the maintenance API has always used
    "auth_secret": "JOBPIPE_AUTH_SECRET",
    "token_max_lifetime_s": "JOBPIPE_TOKEN_MAX_LIFETIME_S",
    "token_issuer": "JOBPIPE_TOKEN_ISSUER",
    "token_audience": "JOBPIPE_TOKEN_AUDIENCE",
    "demo_job_types": "JOBPIPE_DEMO_JOB_TYPES",
    "tenant_max_unfinished_jobs": "JOBPIPE_TENANT_MAX_UNFINISHED_JOBS",
    "max_body_bytes": "JOBPIPE_MAX_BODY_BYTES",
    "inline_limit_bytes": "JOBPIPE_INLINE_LIMIT_BYTES",
    "retention_days": "JOBPIPE_RETENTION_DAYS",
    "retry_base_s": "JOBPIPE_RETRY_BASE_S",
    "idempotency_ttl_s": "JOBPIPE_IDEMPOTENCY_TTL_S",
    "event_bus_name": "JOBPIPE_EVENT_BUS",
    "progress_min_interval_s": "PROGRESS_MIN_INTERVAL_S",
    "dispatch_grace_s": "JOBPIPE_DISPATCH_GRACE_S",
    "max_dispatches": "JOBPIPE_MAX_DISPATCHES",
    "redelivery_base_s": "JOBPIPE_REDELIVERY_BASE_S",
    "redelivery_max_s": "JOBPIPE_REDELIVERY_MAX_S",
    "aws_connect_timeout_s": "JOBPIPE_AWS_CONNECT_TIMEOUT_S",
    "aws_read_timeout_s": "JOBPIPE_AWS_READ_TIMEOUT_S",
    "aws_max_attempts": "JOBPIPE_AWS_MAX_ATTEMPTS",
    "erp_webhook_url": "ERP_WEBHOOK_URL",
    "erp_webhook_secret": "ERP_WEBHOOK_SECRET",
    "erp_receiver_deduplicates": "ERP_RECEIVER_DEDUPLICATES",
    "count_aws_requests": "JOBPIPE_COUNT_AWS_REQUESTS",
    "fault_put_events_failure_rate": "JOBPIPE_FAULT_PUT_EVENTS_FAILURE_RATE",
    "fault_send_message_failure_rate": "JOBPIPE_FAULT_SEND_MESSAGE_FAILURE_RATE",
    "fault_claim_failure_rate": "JOBPIPE_FAULT_CLAIM_FAILURE_RATE",
}


class SettingsError(RuntimeError):
    pass


def load_settings(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Build Settings from environment variables (names in `_ENV`); raises SettingsError
    naming every missing or invalid variable."""
    environ = os.environ if environ is None else environ
    raw = {field: environ[var] for field, var in _ENV.items() if environ.get(var)}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_ENV.get(str(e['loc'][0]), e['loc'][0])}: {_rule(e)}" for e in exc.errors())
        raise SettingsError(f"invalid jobpipe settings: {problems}") from exc


def refused_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """Each variable of `environ` whose value the settings refuse -> the rule it breaks (no value
    shown); settings `environ` does not give are not judged. A deploy checks what it is about to
    pass to the functions this way, before any of them reads it."""
    raw = {field: environ[var] for field, var in _ENV.items() if environ.get(var)}
    try:
        Settings.model_validate(raw)
    except ValidationError as exc:
        return {_ENV[str(e["loc"][0])]: _rule(e) for e in exc.errors() if e["loc"] and e["loc"][0] in raw}
    return {}


def _rule(error: Mapping[str, Any]) -> str:
    """The rule a pydantic `error` states, its bounds (ge=2592000: "2,592,000") written as every
    refusal shows a number (domain.numbers)."""
    message = str(error["msg"])
    for bound in (error.get("ctx") or {}).values():
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            message = re.sub(rf"(?<![\d.]){re.escape(str(bound))}(?![\d.])", shown_number(bound), message)
    return message
