"""The local stack's parameters, from the environment, validated before anything is deployed.

`make run` (scripts/run_local.py) reads the variables below; `scripts/deploy.py` checks the
same rules on the `Key=Value` parameters it is given. A bad value is a `StackConfigError`
whose message is one line naming the variable (or parameter) and the rule it breaks.

Run as `python -m scripts.stack_config` to check the environment alone (exit code 2 when bad).
"""
from __future__ import annotations

import difflib
import math
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from chalicelib import defaults
from chalicelib.domain.numbers import length_rule, shown_number
from chalicelib.domain.webhook_url import shown_url, webhook_url_problem

# The template's MinLength and MaxLength (chalicelib/defaults.py says why), the functions' too.
SECRET_MIN_CHARS = defaults.SECRET_MIN_CHARS
SECRET_MAX_CHARS = defaults.SECRET_MAX_CHARS
WEBHOOK_URL_MAX_CHARS = defaults.WEBHOOK_URL_MAX_CHARS
# The functions' settings' bounds (chalicelib/defaults.py), the template's too.
PROGRESS_INTERVAL_MAX_S = defaults.PROGRESS_MIN_INTERVAL_MAX_S
RETENTION_MAX_DAYS = defaults.RETENTION_MAX_DAYS
# A job's S3 objects must outlive its record, which lives up to a year of schedule, a day of
# running and retries, and its retention: the template's BlobRetentionDays default and minimum.
BLOB_RETENTION_DEFAULT_DAYS = 400
BLOB_RETENTION_MAX_DAYS = 3650
SCHEDULE_MAX_DAYS = defaults.MAX_SCHEDULE_S // 86400
# The retention periods CloudWatch Logs accepts (PutRetentionPolicy), the template's
# LogRetentionDays AllowedValues; 30 by default: a month of log lines to look back on.
LOG_RETENTION_CHOICES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                         2557, 2922, 3288, 3653)
# Reserved concurrency of every function on the local stack. The emulator starts one process
# per concurrent invocation and gives each its own cold import; on two cores a burst of 30
# submits then timed out, peaking at 31-45 processes and 1.4-3.1 GB. A ceiling keeps a burst
# queued behind warm processes (SQS waits in its queue, the client retries the API's 429).
# Measured on that burst: 2 → median 5.9-6.9 s, 0.8 GB; 4 → median 3.5 s, all accepted, 1.2 GB
# (about 65 MB a process: at most 8 functions × 4 + the emulator, if every function were busy).
LOCAL_FUNCTION_CONCURRENCY = 4
# The API function's own ceiling on the local stack: every submit is one API invocation, while
# the other functions take up to ten messages or a stream batch each, so in a burst the API is
# what the others wait on. The 200-job burst of `make bench` (8 submit threads), four runs
# each on warm stacks, alternating: 4 → 34.5-39.0 jobs/s (about 135 throttled submits a run),
# 6 → 39.7-41.6 jobs/s (about 57); 8 gave no more than 6. Two more processes, ~110 MB.
LOCAL_API_CONCURRENCY = 6
FUNCTION_CONCURRENCY_MAX = 1000


def local_api_ceiling(function_ceiling: int) -> int:
    """The API's ceiling on a local stack whose functions have `function_ceiling` (0: none):
    LOCAL_API_CONCURRENCY, or none when no ceiling was asked for."""
    return LOCAL_API_CONCURRENCY if function_ceiling else 0

# CloudFormation parameter -> (environment variable, default shown in the README).
VARIABLES: dict[str, tuple[str, str]] = {
    "AuthSecret": ("JOBPIPE_AUTH_SECRET", "generated once into .local/auth-secret"),
    "ErpWebhookUrl": ("ERP_WEBHOOK_URL", "empty: no webhook"),
    "ErpWebhookSecret": ("ERP_WEBHOOK_SECRET", "empty"),
    "ErpReceiverDeduplicates": ("ERP_RECEIVER_DEDUPLICATES",
                                "false (true: the ERP deduplicates on the signed body's event_id, the bridge keeps no ledger)"),
    "UseTaskQueue": ("USE_TASK_QUEUE", "true"),
    "ProgressMinIntervalSeconds": ("PROGRESS_MIN_INTERVAL_S", shown_number(defaults.PROGRESS_MIN_INTERVAL_S)),
    "RetentionDays": ("RETENTION_DAYS", f"{defaults.RETENTION_DAYS}"),
    "BlobRetentionDays": ("BLOB_RETENTION_DAYS", "400 (at least 400 and RETENTION_DAYS + 366)"),
    "LogRetentionDays": ("LOG_RETENTION_DAYS", "30"),
    "FunctionConcurrencyCeiling": ("JOBPIPE_FUNCTION_CONCURRENCY",
                                   f"{LOCAL_FUNCTION_CONCURRENCY} (0: none, the template's default)"),
    "ApiConcurrencyCeiling": ("JOBPIPE_API_CONCURRENCY",
                              f"{LOCAL_API_CONCURRENCY}, or 0 when JOBPIPE_FUNCTION_CONCURRENCY is 0 "
                              "(0: the API takes JOBPIPE_FUNCTION_CONCURRENCY's ceiling)"),
}


class StackConfigError(ValueError):
    """A parameter breaks its rule; the message is one line meant for a person."""


class _Rule(ValueError):
    """One field's problem: which field (a parameter name) and the rule, without the name."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field
        self.rule = rule


# A number as CloudFormation's Number parameter takes it: ASCII digits, with a sign, a point or
# an exponent. Python's float() takes more that CloudFormation refuses after the upload:
# 1_000, digits of other scripts (١٠), inf and nan.
_WRITTEN_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
# What the rule says of such a number's writing.
WRITTEN_IN_DIGITS = "written in the digits 0-9, without _ or separators"


def written_number(text: str) -> Optional[float]:
    """`text` (surrounding whitespace aside) as the number CloudFormation's Number parameter reads,
    or None when it is none CloudFormation takes (a finite number, written as _WRITTEN_NUMBER)."""
    text = text.strip()
    if not _WRITTEN_NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _how_written(text: str) -> str:
    """What a rule adds for `text`, refused as no number: how to write one, when it reads as a
    number all the same (1_000), which a person would take for one; else nothing."""
    try:
        float(text)
    except ValueError:
        return ""
    return f", {WRITTEN_IN_DIGITS}"


def _number(field: str, value: Any, *, low: float, high: float, whole: bool) -> float:
    kind = "a whole number" if whole else "a number"
    number = written_number(str(value))
    if number is None or not low <= number <= high or (whole and not number.is_integer()):
        written = _how_written(str(value)) if number is None else ""
        raise _Rule(field, f"must be {kind} from {shown_number(low)} to {shown_number(high)}{written} "
                           f"(got {str(value)!r})")
    return number


def boolean(value: Any) -> bool:
    """A switch as people write it (true/false, yes/no, on/off, 1/0, any case); raises
    ValueError with the rule, for a message that names the variable."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false (got {str(value)[:40]!r})")


class StackParameters(BaseModel):
    """The parameters `make run` deploys with (field names are the template's parameters)."""

    model_config = ConfigDict(extra="forbid")

    AuthSecret: Optional[str] = None
    ErpWebhookUrl: str = ""
    ErpWebhookSecret: str = ""
    ErpReceiverDeduplicates: str = "false"
    UseTaskQueue: str = "true"
    ProgressMinIntervalSeconds: str = f"{defaults.PROGRESS_MIN_INTERVAL_S:g}"
    RetentionDays: str = f"{defaults.RETENTION_DAYS}"
    BlobRetentionDays: Optional[str] = None
    LogRetentionDays: str = "30"
    # None: the caller decides (`make run` deploys LOCAL_FUNCTION_CONCURRENCY and
    # LOCAL_API_CONCURRENCY, AWS the template's 0 for both).
    FunctionConcurrencyCeiling: Optional[str] = None
    ApiConcurrencyCeiling: Optional[str] = None

    @field_validator("AuthSecret", mode="before")
    @classmethod
    def _auth_secret(cls, value: Any) -> Any:
        if value is None:
            return None
        if len(value) < SECRET_MIN_CHARS:
            raise _Rule("AuthSecret", length_rule("at least", SECRET_MIN_CHARS, len(value)))
        if len(value) > SECRET_MAX_CHARS:
            raise _Rule("AuthSecret", length_rule("at most", SECRET_MAX_CHARS, len(value)))
        if value.strip() != value:
            raise _Rule("AuthSecret", "must not start or end with whitespace")
        return value

    @field_validator("ErpWebhookUrl", mode="before")
    @classmethod
    def _webhook_url(cls, value: Any) -> str:
        value = str(value).strip()
        if not value:
            return ""
        problem = webhook_url_problem(value)
        if problem is not None:  # a URL too long to quote is said by its length alone
            shown = "" if len(value) > WEBHOOK_URL_MAX_CHARS else f" (got {shown_url(value)!r})"
            raise _Rule("ErpWebhookUrl", problem + shown)
        return value

    @field_validator("UseTaskQueue", "ErpReceiverDeduplicates", mode="before")
    @classmethod
    def _boolean(cls, value: Any, info: ValidationInfo) -> str:
        try:
            return "true" if boolean(value) else "false"
        except ValueError as exc:
            raise _Rule(info.field_name, str(exc)) from None

    @field_validator("ProgressMinIntervalSeconds", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> str:
        return f"{_number('ProgressMinIntervalSeconds', value, low=0, high=PROGRESS_INTERVAL_MAX_S, whole=False):g}"

    @field_validator("RetentionDays", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> str:
        return str(int(_number("RetentionDays", value, low=1, high=RETENTION_MAX_DAYS, whole=True)))

    @field_validator("BlobRetentionDays", mode="before")
    @classmethod
    def _blob_retention(cls, value: Any) -> Optional[str]:
        if value is None:
            return None
        return str(int(_number("BlobRetentionDays", value, low=BLOB_RETENTION_DEFAULT_DAYS,
                               high=BLOB_RETENTION_MAX_DAYS, whole=True)))

    @field_validator("LogRetentionDays", mode="before")
    @classmethod
    def _log_retention(cls, value: Any) -> str:
        text = str(value).strip()
        if not text.isdigit() or int(text) not in LOG_RETENTION_CHOICES:
            raise _Rule("LogRetentionDays", f"must be one of the periods CloudWatch Logs keeps: "
                        f"{', '.join(map(str, LOG_RETENTION_CHOICES))} (got {text[:20]!r})")
        return str(int(text))

    @field_validator("FunctionConcurrencyCeiling", "ApiConcurrencyCeiling", mode="before")
    @classmethod
    def _concurrency(cls, value: Any, info: ValidationInfo) -> Optional[str]:
        if value is None:
            return None
        return str(int(_number(info.field_name, value, low=0, high=FUNCTION_CONCURRENCY_MAX, whole=True)))

    @model_validator(mode="after")
    def _across_fields(self, info: ValidationInfo) -> "StackParameters":
        # An update may keep the stack's secret: check_webhook_signing checks a URL given alone.
        secret_given = "ErpWebhookSecret" in self.model_fields_set or not (info.context or {}).get("update")
        if self.ErpWebhookUrl and secret_given and len(self.ErpWebhookSecret) < SECRET_MIN_CHARS:
            raise _Rule("ErpWebhookSecret", length_rule("at least", SECRET_MIN_CHARS, len(self.ErpWebhookSecret),
                                                        when="{ErpWebhookUrl} is set"))
        if self.ErpWebhookSecret and len(self.ErpWebhookSecret) < SECRET_MIN_CHARS:
            raise _Rule("ErpWebhookSecret", length_rule("at least", SECRET_MIN_CHARS, len(self.ErpWebhookSecret)))
        if len(self.ErpWebhookSecret) > SECRET_MAX_CHARS:
            raise _Rule("ErpWebhookSecret", length_rule("at most", SECRET_MAX_CHARS, len(self.ErpWebhookSecret)))
        retention = int(self.RetentionDays)
        least = retention + SCHEDULE_MAX_DAYS + 1
        if self.BlobRetentionDays is None:
            self.BlobRetentionDays = str(max(BLOB_RETENTION_DEFAULT_DAYS, least))
        elif int(self.BlobRetentionDays) < least:
            raise _Rule("BlobRetentionDays", f"must be at least {{RetentionDays}} + {SCHEDULE_MAX_DAYS + 1} ({least}), "
                        f"so a job's objects outlive its record (got {self.BlobRetentionDays})")
        return self

    def as_parameters(self) -> dict[str, str]:
        """The CloudFormation parameters (AuthSecret only when set)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _refusal(exc: ValidationError, name_of: Mapping[str, str]) -> StackConfigError:
    lines = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _Rule):
            field, rule = cause.field, cause.rule
        else:
            field = str(error["loc"][0]) if error["loc"] else "?"
            rule = error["msg"]
        for param, name in name_of.items():  # rules name other fields as {Param}
            rule = rule.replace("{" + param + "}", name)
        lines.append(f"{name_of.get(field, field)} {rule}")
    return StackConfigError("; ".join(lines))


def from_environment(environ: Mapping[str, str]) -> StackParameters:
    """The parameters the environment gives (unset or empty variables keep their defaults);
    raises StackConfigError naming the variable and the rule."""
    raw = {param: environ[var] for param, (var, _) in VARIABLES.items() if environ.get(var, "") != ""}
    names = {param: var for param, (var, _) in VARIABLES.items()}
    try:
        return StackParameters.model_validate(raw)
    except ValidationError as exc:
        raise _refusal(exc, names) from None


def check_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """Check the parameters this module knows among `parameters` (CloudFormation names, as
    `python -m scripts.deploy ... Key=Value` takes them) and return them as CloudFormation
    takes them (`UseTaskQueue=yes` becomes `true`, `RetentionDays= 14` becomes `14`); raises
    StackConfigError naming the parameter. Parameters it does not know are left, unchanged,
    to CloudFormation; only the parameters given are returned (the template keeps its defaults).
    An ErpWebhookUrl given without its secret is left to check_webhook_signing, which knows
    whether the stack keeps one."""
    known = {k: v for k, v in parameters.items() if k in VARIABLES}
    try:
        checked = StackParameters.model_validate(known, context={"update": True}).model_dump()
    except ValidationError as exc:
        raise _refusal(exc, {param: param for param in VARIABLES}) from None
    return {k: (checked[k] if k in known else v) for k, v in parameters.items()}


def _declared_rule(name: str, spec: Mapping[str, Any], value: str) -> Optional[str]:
    """The rule `value` breaks among parameter `name`'s declared constraints (`spec`, as the
    template declares it), or None; CloudFormation's own checks, made before anything is sent."""
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return f"must be one of {', '.join(map(str, spec['AllowedValues']))}"
    if spec.get("Type") == "Number":
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        bounds = (f" from {shown_number(low)}" if low is not None else "") + (
            f" {'to' if low is not None else 'at most'} {shown_number(high)}" if high is not None else "")
        number = written_number(value)
        if number is None:
            return f"must be a number{bounds}{_how_written(value)}"
        if (low is not None and number < low) or (high is not None and number > high):
            return f"must be a number{bounds}"
        return None
    if len(value) < spec.get("MinLength", 0) or len(value) > spec.get("MaxLength", math.inf) or (
            "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value)):
        return spec.get("ConstraintDescription") or (
            f"must be {shown_number(spec.get('MinLength', 0))} to {shown_number(spec.get('MaxLength', 4096))} "
            "characters matching "
            f"{spec.get('AllowedPattern', '.*')}")
    return None


def check_declared(declared: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, str], source: str) -> None:
    """Check `parameters` against the parameters `declared` by the template read from `source`
    (its name, for the message): each must be declared, and keep its type, bounds, lengths,
    allowed values and pattern. Raises StackConfigError, one line naming the first that does
    not (a NoEcho parameter's value never shown)."""
    for name, value in parameters.items():
        spec = declared.get(name)
        if spec is None:
            close = [k for k in declared if k.lower() == name.lower()] or difflib.get_close_matches(name, declared, 1)
            raise StackConfigError(f"{source} has no parameter {name}" + (f" ({close[0]}?)" if close else ""))
        rule = _declared_rule(name, spec, str(value))
        if rule is not None:
            shown = "" if spec.get("NoEcho") else f" (got {str(value)[:40]!r})"
            raise StackConfigError(f"{name} {rule}{shown}")


# A cron(...) schedule's fields as EventBridge bounds them: (name in a refusal, lowest, highest,
# the names it takes for its values, the forms beside values, ranges and increments it takes).
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minutes", 0, 59, ()), ("hours", 0, 23, ()), ("day-of-month", 1, 31, ()), ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _WEEKDAYS), ("year", 1970, 2199, ()),
)
# One item of a field (its values split at commas): *, a value or a range, with an increment.
_CRON_ITEM = re.compile(r"(?P<start>\*|[0-9]+|[A-Z]{3})(?:-(?P<end>[0-9]+|[A-Z]{3}))?(?:/(?P<step>[0-9]+))?")
# The forms only day-of-month takes (L, LW, 15W, L-3) and only day-of-week (L, 6L, 6#3).
_DAY_OF_MONTH_FORMS = re.compile(r"L|LW|L-(?P<offset>[0-9]+)|(?P<value>[0-9]+)W")
_DAY_OF_WEEK_FORMS = re.compile(r"L|(?P<value>[0-9]+|[A-Z]{3})(?:L|#(?P<nth>[0-9]+))")


def _cron_value(token: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """Whether `token` is a value of a field from `low` to `high` that takes `names` for them."""
    if token.isdigit():
        return low <= int(token) <= high
    return token in names


def cron_problem(expression: str) -> Optional[str]:
    """What EventBridge refuses in `expression`, a cron(...) schedule of the right shape (six
    fields, `?` in one day field: the template's pattern), or None: a value out of its field's
    range (hour 25, minute 60, day 32, month 13), an increment of 0 or past the field's range,
    a form the field does not take."""
    fields = expression[len("cron("):-1].upper().split(" ")
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS):
        bounds = f"{low} to {high}" + (f" or {names[0]} to {names[-1]}" if names else "")
        for item in text.split(","):
            if item == "?" and field in ("day-of-month", "day-of-week"):
                continue
            extra = {"day-of-month": _DAY_OF_MONTH_FORMS, "day-of-week": _DAY_OF_WEEK_FORMS}.get(field)
            special = extra.fullmatch(item) if extra else None
            if special is not None:
                values = [v for v in (special.groupdict().get("value"),) if v]
                if special.groupdict().get("offset") and not 0 <= int(special["offset"]) <= 30:
                    return f"its day-of-month's offset from L must be 0 to 30, not {item!r}"
                if special.groupdict().get("nth") and not 1 <= int(special["nth"]) <= 5:
                    return f"its day-of-week's #n must be #1 to #5, not {item!r}"
            else:
                match = _CRON_ITEM.fullmatch(item)
                if match is None:
                    return f"its {field} must be {bounds}, with , - * /, not {item!r}"
                values = [v for v in (match["start"], match["end"]) if v and v != "*"]
                step = match["step"]
                if step is not None and not 1 <= int(step) <= (high if field != "year" else high - low):
                    return f"the increment of its {field} must be 1 to {high if field != 'year' else high - low}, " \
                           f"not {item!r}"
            for value in values:
                if not _cron_value(value, low, high, names):
                    return f"its {field} must be {bounds}, not {item!r}"
    return None


# Resource properties that take a schedule expression (an EventBridge rule's; SAM's Schedule event).
SCHEDULE_PROPERTIES = frozenset({"ScheduleExpression", "Schedule"})
# The longest schedule expression EventBridge's PutRule takes.
SCHEDULE_MAX_CHARS = 256


def check_schedules(template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
    """Each of `parameters` that `template` gives a schedule (SCHEDULE_PROPERTIES) must be one
    EventBridge takes: the template's pattern checks its shape, this its length and each
    cron(...) field's range. Raises StackConfigError, one line naming the first refused."""
    for name, targets in sorted(property_refs(template).items()):
        value = str(parameters.get(name, ""))
        if not any(prop in SCHEDULE_PROPERTIES for _, prop in targets):
            continue
        if len(value) > SCHEDULE_MAX_CHARS:  # a cron(...) listing every minute of every hour
            raise StackConfigError(f"{name} is no schedule EventBridge takes: "
                                   f"{length_rule('at most', SCHEDULE_MAX_CHARS, len(value))} ({value[:40]!r}...)")
        if not value.startswith("cron("):
            continue
        problem = cron_problem(value)
        if problem is not None:
            raise StackConfigError(f"{name} is no schedule EventBridge takes ({value[:80]!r}): {problem}")


# A rate(...) schedule's unit in seconds (ReconcilerSchedule's AllowedPattern takes these).
_RATE_UNITS_S = {"minute": 60, "hour": 3600, "day": 86400}


def check_reconciler_watch(declared: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, str]) -> None:
    """ReconcilerSilentAlarm must not go off between two passes: ReconcilerSilentAlarmSeconds
    (unless 0, no alarm) at least twice the period of a rate(...) ReconcilerSchedule, each as
    given or as the template's default. A cron(...) schedule's period is not worked out: its
    alarm is the operator's to fit. Raises StackConfigError saying what to set."""
    def given(name: str) -> str:
        return str(parameters.get(name, declared.get(name, {}).get("Default", "")))

    silent, schedule = given("ReconcilerSilentAlarmSeconds"), given("ReconcilerSchedule")
    rate = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", schedule)
    if not rate or not silent or float(silent) == 0:
        return
    period_s = int(rate.group(1)) * _RATE_UNITS_S[rate.group(2)]
    if float(silent) < 2 * period_s:
        raise StackConfigError(
            f"ReconcilerSilentAlarmSeconds {silent} is less than twice ReconcilerSchedule's period "
            f"({schedule}: {shown_number(period_s)} s), so its alarm would go off between two passes: set it to at "
            f"least {shown_number(2 * period_s)} (one of its allowed values), or 0 for no such alarm")


# Resource properties AWS takes as an integer only (API Gateway, Lambda, S3, CloudWatch, SQS):
# a Number parameter given to one must be whole, or CloudFormation fails after the upload.
WHOLE_PROPERTIES = frozenset({
    "ThrottlingBurstLimit", "ReservedConcurrentExecutions", "BatchSize", "MaximumBatchingWindowInSeconds",
    "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "ParallelizationFactor", "Timeout", "MemorySize",
    "ExpirationInDays", "NoncurrentDays", "RetentionInDays", "Period", "EvaluationPeriods", "DatapointsToAlarm",
    "VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds",
    "maxReceiveCount",
})
# Resource properties that take a fraction (API Gateway's requests a second).
FRACTION_PROPERTIES = frozenset({"ThrottlingRateLimit"})


def property_refs(template: Mapping[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """Parameter -> the (resource, property) pairs `template`'s resources give it to (`{"Ref": P}`
    as a property's value, or as a branch of an Fn::If in it; environment variables left out,
    fed_variables has them)."""
    refs: dict[str, set[tuple[str, str]]] = {}

    def walk(node: Any, resource: str, prop: Optional[str]) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("Ref"), str) and prop is not None:
                refs.setdefault(node["Ref"], set()).add((resource, prop))
            for key, value in node.items():
                if key != "Environment":
                    walk(value, resource, prop if key.startswith("Fn::") else key)
        elif isinstance(node, list):
            for value in node:
                walk(value, resource, prop)

    for logical, resource in (template.get("Resources") or {}).items():
        if isinstance(resource, dict):
            walk(resource.get("Properties"), logical, None)
    return refs


def check_whole_numbers(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, str]:
    """Each of `parameters` that `template` gives a resource property AWS takes as an integer
    (WHOLE_PROPERTIES) must be a whole number: the template's Number takes 1.5, API Gateway's
    burst limit does not. Returns `parameters` with those written as integers (`2000.0` is
    `2000`); raises StackConfigError, one line naming the first refused and where it goes."""
    checked = dict(parameters)
    for name, targets in sorted(property_refs(template).items()):
        whole = sorted(target for target in targets if target[1] in WHOLE_PROPERTIES)
        if name not in parameters or not whole:
            continue
        value = str(parameters[name]).strip()
        number = written_number(value)
        if number is None or not number.is_integer():
            resource, prop = whole[0]
            raise StackConfigError(f"{name} must be a whole number, as {resource}'s {prop} takes it "
                                   f"(got {value[:40]!r})")
        checked[name] = str(int(number))
    return checked


def _resolved(template: Mapping[str, Any], node: Any, values: Mapping[str, str]) -> Any:
    """`node` as CloudFormation resolves it with parameter `values`: a Ref to a parameter, an
    Fn::If on the template's Conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition); None
    for AWS::NoValue. Any other node is returned as it is."""
    if not (isinstance(node, dict) and len(node) == 1):
        return node
    (function, args), = node.items()
    if function == "Ref":
        return None if args == "AWS::NoValue" else values.get(args, node)
    if function == "Fn::If":
        condition, yes, no = args
        return _resolved(template, yes if _holds(template, condition, values) else no, values)
    return node


def _holds(template: Mapping[str, Any], condition: str, values: Mapping[str, str]) -> bool:
    def holds(node: Any) -> bool:
        (function, args), = node.items()
        if function == "Condition":
            return holds(template["Conditions"][args])
        if function == "Fn::Equals":
            return str(_resolved(template, args[0], values)) == str(_resolved(template, args[1], values))
        if function == "Fn::Not":
            return not holds(args[0])
        if function == "Fn::And":
            return all(holds(arg) for arg in args)
        if function == "Fn::Or":
            return any(holds(arg) for arg in args)
        raise ValueError(f"condition {condition} uses {function}, which this check does not evaluate")

    return holds(template["Conditions"][condition])


def reserved_concurrency(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, int]:
    """Function (logical id) -> the concurrent executions `template` reserves for it with the
    parameter `values` (ReservedConcurrentExecutions; functions that reserve none left out)."""
    reserved: dict[str, int] = {}
    for logical, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict):
            continue
        value = _resolved(template, (resource.get("Properties") or {}).get("ReservedConcurrentExecutions"), values)
        number = written_number(str(value)) if value is not None else None
        if number:
            reserved[logical] = int(number)
    return reserved


def sqs_mapping_concurrency(template: Mapping[str, Any]) -> dict[str, int]:
    """Function (logical id) -> the batches its SQS mappings may run at once (the sum of their
    ScalingConfig.MaximumConcurrency; a function with no such mapping left out)."""
    most: dict[str, int] = {}
    for logical, resource in (template.get("Resources") or {}).items():
        events = ((resource or {}).get("Properties") or {}).get("Events") if isinstance(resource, dict) else None
        for event in (events or {}).values():
            if not isinstance(event, dict) or event.get("Type") != "SQS":
                continue
            scaling = (event.get("Properties") or {}).get("ScalingConfig") or {}
            if isinstance(scaling.get("MaximumConcurrency"), int):
                most[logical] = most.get(logical, 0) + scaling["MaximumConcurrency"]
    return most


def check_mapping_concurrency(template: Mapping[str, Any], values: Mapping[str, str]) -> None:
    """Each function's reserved concurrency (its ceilings at `values`, what the stack will run
    with) must hold every batch its SQS mappings may run at once: on AWS a mapping does not keep
    to a reservation below its MaximumConcurrency, Lambda throttles the batches over it, and
    their messages come back only after the queue's visibility timeout (the jobs queues' 90
    minutes), each time one receive nearer the dead-letter queue. An emulator that runs
    min(MaximumConcurrency, reserved) batches (ministack) needs no such check. Raises
    StackConfigError, one line naming the ceiling and the least it may be."""
    reserved = reserved_concurrency(template, values)
    short = [(most, function) for function, most in sqs_mapping_concurrency(template).items()
             if function in reserved and reserved[function] < most]
    if not short:
        return
    most, function = max(short)
    ceilings = sorted(name for name, targets in property_refs(template).items()
                      if (function, "ReservedConcurrentExecutions") in targets and str(values.get(name, "0")) != "0")
    given = ", ".join(f"{name}={values[name]}" for name in ceilings) or "its ReservedConcurrentExecutions"
    fix = f"{ceilings[0]}=0 (no reservation) or at least {most}" if ceilings else f"at least {most}"
    raise StackConfigError(
        f"{given} reserves {reserved[function]} concurrent executions for {function}, whose SQS mapping runs up to "
        f"{most} batches at once (MaximumConcurrency): Lambda would throttle the rest, their messages back on the "
        f"queue only after its visibility timeout and one receive nearer its dead-letter queue; give {fix}")


# Resource properties that take the ARNs of a CloudWatch alarm's actions.
ALARM_ACTION_PROPERTIES = frozenset({"AlarmActions", "OKActions", "InsufficientDataActions"})


def check_alarm_actions(template: Mapping[str, Any], parameters: Mapping[str, str], region: str,
                        partition: Optional[str]) -> None:
    """Each of `parameters` that `template` gives an alarm's actions (ALARM_ACTION_PROPERTIES),
    an SNS topic's ARN, must name a topic in the stack's `region` (and its `partition`, when
    known): CloudWatch refuses an alarm notifying another region's topic ("Invalid region ...
    specified"), which the template's pattern cannot know. Raises StackConfigError, one line."""
    for name, targets in sorted(property_refs(template).items()):
        value = str(parameters.get(name, ""))
        if not value or not any(prop in ALARM_ACTION_PROPERTIES for _, prop in targets):
            continue
        fields = value.split(":")
        if len(fields) < 6 or fields[0] != "arn":
            continue  # the template's pattern says what an ARN is
        if fields[3] != region or (partition is not None and fields[1] != partition):
            where = f"{partition}:{region}" if partition is not None and fields[1] != partition else region
            raise StackConfigError(
                f"{name} names a topic in {fields[1]}:{fields[3]}, and CloudWatch alarms notify only topics in the "
                f"stack's own region ({where}): create the topic there (its subscriptions may deliver anywhere) "
                f"(got {value[:120]!r})")


def fed_variables(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """Parameter -> the function environment variables `template` passes it as (`{"Ref": P}` in
    an Environment's Variables, of Globals or of a function)."""
    fed: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            environment = node.get("Environment")
            variables = environment.get("Variables") if isinstance(environment, dict) else None
            for var, value in (variables if isinstance(variables, dict) else {}).items():
                if isinstance(value, dict) and isinstance(value.get("Ref"), str):
                    fed.setdefault(value["Ref"], set()).add(var)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({"Globals": template.get("Globals"), "Resources": template.get("Resources")})
    return fed


def check_settings(template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
    """Check each of `parameters` that `template` passes to the functions against the rule their
    settings hold that variable to (chalicelib/settings.py): the template's Number takes 1.5
    where the functions read a whole number. Raises StackConfigError, one line naming the first
    refused (a NoEcho parameter's value never shown)."""
    from chalicelib.settings import refused_variables

    fed = fed_variables(template)
    declared = template.get("Parameters") or {}

    def refuse(name: str, value: str, var: str, rule: str) -> None:
        shown = "" if (declared.get(name) or {}).get("NoEcho") else f" (got {str(value)[:40]!r})"
        raise StackConfigError(f"{name} would be refused by the functions, which read it as {var}: {rule}{shown}")

    for name, value in parameters.items():
        refused = refused_variables({var: str(value) for var in sorted(fed.get(name, ()))})
        if refused:
            refuse(name, value, *next(iter(refused.items())))
    # Then together, for the rules between settings (RedeliveryMaxSeconds at least RedeliveryBaseSeconds).
    name_of = {var: name for name in parameters for var in fed.get(name, ())}
    refused = refused_variables({var: str(parameters[name]) for var, name in name_of.items()})
    if refused:
        var, rule = next(iter(refused.items()))
        refuse(name_of[var], parameters[name_of[var]], var, rule)


def kept_values(declared: Mapping[str, Any], current: Optional[list[Mapping[str, Any]]]) -> dict[str, str]:
    """The values a stack keeps (`current`, its DescribeStacks Parameters; None for a new stack)
    of the parameters `declared`: what an update that does not give them runs with. A NoEcho
    parameter's reads MASKED."""
    return {str(p["ParameterKey"]): str(p["ParameterValue"]) for p in current or []
            if p.get("ParameterKey") in declared and "ParameterValue" in p}


def run_values(declared: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, str],
               current: Optional[list[Mapping[str, Any]]]) -> dict[str, str]:
    """What a stack will run with: `parameters` as given, every other declared parameter at the
    value the stack keeps (kept_values) or, when it has none, the template's default."""
    defaults = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    return {**defaults, **kept_values(declared, current), **parameters}


def check_kept(template: Mapping[str, Any], parameters: Mapping[str, str], current: list[Mapping[str, Any]],
               stack: str) -> None:
    """An update's checks between parameters (check_reconciler_watch, check_settings) made again
    over what `stack` will run with: `parameters` as given, every other parameter at the value
    in `current` (its DescribeStacks Parameters) that the update keeps, not the template's
    default the checks before it assumed. A NoEcho parameter's current value, which
    CloudFormation does not show, is left out. Raises StackConfigError, one line naming the kept
    values it involves."""
    declared = template.get("Parameters") or {}
    kept = {name: value for name, value in kept_values(declared, current).items()
            if name not in parameters and not declared[name].get("NoEcho")}
    if not kept:
        return
    try:
        check_reconciler_watch(declared, {**kept, **parameters})
        check_settings(template, {**kept, **parameters})
    except StackConfigError as exc:
        involved = [f"{name}={value}" for name, value in kept.items() if name in str(exc)]
        which = f"{', '.join(involved)}: " if involved else ""
        raise StackConfigError(f"{exc} ({which}stack {stack}'s current value of what this update does not give, "
                               "which it keeps: give the parameters together)") from None


# How DescribeStacks shows a NoEcho parameter's value, whatever it is.
MASKED = "****"


def check_webhook_signing(declared: Mapping[str, Mapping[str, Any]], parameters: Mapping[str, str],
                          current: Optional[list[Mapping[str, Any]]], stack: str) -> None:
    """The template's rule that ErpWebhookUrl needs an ErpWebhookSecret (of SECRET_MIN_CHARS or
    more), over what `stack` will run with: `parameters` as given, every other at the value the
    stack keeps (`current`, its DescribeStacks Parameters; None for a new stack) or, when it
    has none, the template's default. A kept secret shown as MASKED (NoEcho) is taken as set:
    the deploy cannot read it, and CloudFormation checks the rule with its value. Raises
    StackConfigError, one line."""
    if "ErpWebhookUrl" not in declared or "ErpWebhookSecret" not in declared:
        return
    kept = kept_values(declared, current)
    values = run_values(declared, parameters, current)
    url, secret = str(values.get("ErpWebhookUrl", "")).strip(), str(values.get("ErpWebhookSecret", ""))
    if not url or (secret == MASKED and "ErpWebhookSecret" not in parameters):
        return
    if len(secret) < SECRET_MIN_CHARS:
        rule = length_rule("at least", SECRET_MIN_CHARS, len(secret), when="ErpWebhookUrl is set")
        if "ErpWebhookUrl" not in parameters:
            rule += f" (stack {stack} keeps ErpWebhookUrl {shown_url(url)!r}: give ErpWebhookUrl= to stop its deliveries)"
        elif "ErpWebhookSecret" not in parameters and "ErpWebhookSecret" in kept:
            rule += f" (stack {stack}'s, which this update keeps)"
        raise StackConfigError(f"ErpWebhookSecret {rule}")


def check_cache_rules(code_zip: Path, shown: str) -> None:
    """The cache invalidation rules file the packaged code (`code_zip`, named `shown` in the
    message) carries, checked as its functions check it at their cold start
    (composition.checked_cache_rules: JSON, valid names, every key a job type the code
    registers). Raises StackConfigError, one line naming the file and what is wrong."""
    from chalicelib.composition import RULES_SOURCE, checked_cache_rules
    from chalicelib.settings import SettingsError
    from chalicelib.subscribers.cache import parse_rules

    try:
        with zipfile.ZipFile(code_zip) as code:
            text = code.read(RULES_SOURCE).decode("utf-8")
    except KeyError:
        raise StackConfigError(f"{shown} has no {RULES_SOURCE}; `make package` builds it") from None
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise StackConfigError(f"{shown} is unreadable ({' '.join(str(exc).split())}); `make package` builds it") \
            from None
    try:
        checked_cache_rules(lambda: parse_rules(text), f"{shown}:{RULES_SOURCE}")
    except SettingsError as exc:
        raise StackConfigError(str(exc)) from None
    except (ValueError, TypeError) as exc:  # a job type its registry refuses, on importing them
        raise StackConfigError(f"the job types do not load ({' '.join(str(exc).split())}), so no function "
                               "could run a job: fix the job type") from None


def main() -> None:
    """`make run`'s first step: the stack's parameters, GATEWAY_PORT and JOBPIPE_STACK checked
    before the package is built (minutes on a fresh machine); one line and exit code 2 when bad."""
    import os

    from scripts.run_local import STACK, check_stack_name, gateway_port

    try:
        from_environment(os.environ)
    except StackConfigError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        sys.exit(2)
    gateway_port(dict(os.environ))
    check_stack_name(STACK)


if __name__ == "__main__":
    main()
