"""What a job author meets in the runner, the job context and the registry: each handler
mistake ends its attempt with a clear code (never escapes the runner, never leaves the job
`running`), a ctx refuses writes once its attempt ended, progress and artifact arguments are
checked at the call, and payload models round-trip, hold no secret and are pydantic models."""
import asyncio
import dataclasses
import time
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Optional

import pydantic
import pytest
from pydantic import (
    BaseModel, ConfigDict, Field, PlainSerializer, SecretStr, WrapSerializer, computed_field, field_serializer,
    model_serializer,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import core_schema
from typing_extensions import TypedDict

from chalicelib.adapters.clocks import SystemClock
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.defaults import (
    MAX_EVENT_TEXT_CHARS, MAX_JSON_DEPTH, MAX_LABEL_CHARS, MAX_PROGRESS_MESSAGE_CHARS, MAX_PROGRESS_REPORT_BYTES,
)
from chalicelib.domain.errors import (
    AnswerFullError, FatalJobError, InvalidArtifactError, JobpipeError, JobTimeoutError, PayloadGoneError,
    PayloadTooDeepError, ProgressRejectedError, RecordFullError, RetryableJobError, TooManyChildrenError,
)
from chalicelib.domain.job import child_job_id
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.runner import JobRunner


class Empty(BaseModel):
    pass


class Aliased(BaseModel):
    from_: str = Field(alias="from")  # `from` is a keyword: the usual pydantic spelling


class WithSecret(BaseModel):
    token: SecretStr


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("__str__ broke")


class HandlerAbort(BaseException):
    """What some libraries raise to unwind (gevent's Timeout, trio's Cancelled...)."""


BASE_EXCEPTIONS = {
    "system_exit": lambda: SystemExit(3),  # sys.exit() in a library or a CLI entry point reused as a handler
    "asyncio_cancelled": asyncio.CancelledError,  # a handler running asyncio.run(...) whose task was cancelled
    "custom_base_exception": HandlerAbort,
}


def outcome_of(call, refusal: type, seen: list, refused: str = "refused", taken: str = "accepted") -> str:
    """`taken` when `call()` returns, else `refused` with the refusal (of type `refusal`) kept in
    `seen`: what a handler that catches the documented refusal of a ctx call returns."""
    try:
        call()
    except refusal as exc:
        seen.append(exc)
        return refused
    return taken


def run_once(lifecycle, queue, types, type_: str, **submitted):
    """A job of `type_` (no payload) submitted and its message run by a worker on the real clock:
    the job as that run left it."""
    lifecycle.submit(tenant="acme", user="ann", type=type_, payload={}, **submitted)
    (message,) = queue.drain()
    return JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(message)


def make_types(seen):
    types = JobTypeRegistry()

    for name, make in BASE_EXCEPTIONS.items():
        def raise_it(ctx, payload, make=make):
            raise make()
        types.register(f"a.{name}", Empty, max_attempts=3)(raise_it)

    @types.register("a.unprintable", Empty, max_attempts=3)
    def unprintable(ctx, payload):
        raise Unprintable()

    @types.register("a.swallows_timeout", Empty, timeout_s=1, max_attempts=1)
    def swallows_timeout(ctx, payload):
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:  # a retry loop around flaky I/O: `except Exception`
            try:
                time.sleep(0.05)
            except Exception:
                pass
        return {"done": "after its timeout"}

    @types.register("a.aliased", Aliased)
    def aliased(ctx, payload):
        return {"from": payload.from_}

    @types.register("a.keeps_ctx", Empty)
    def keeps_ctx(ctx, payload):
        seen.append(ctx)  # e.g. handed to a background thread or a callback that outlives the handler
        return "ok"

    @types.register("a.keeps_ctx_past_its_timeout", Empty, timeout_s=1, max_attempts=1)
    def keeps_ctx_past_its_timeout(ctx, payload):
        seen.append(ctx)  # handed to a thread that goes on after the attempt timed out
        time.sleep(5)

    @types.register("a.details_int_keys", Empty, max_attempts=1)
    def details_int_keys(ctx, payload):
        details = seen.pop() if seen else {1: "first row"}
        return outcome_of(lambda: ctx.progress(10, details=details, force=True), ProgressRejectedError, seen,
                          refused="refused as documented")

    @types.register("a.returns", Empty, max_attempts=1)
    def returns(ctx, payload):
        return seen[0]

    @types.register("a.reports_percent", Empty, max_attempts=1)
    def reports_percent(ctx, payload):
        return outcome_of(lambda: ctx.progress(seen[0], force=True), ProgressRejectedError, seen)

    @types.register("a.fails_at_percent", Empty, max_attempts=3)
    def fails_at_percent(ctx, payload):
        ctx.progress(30, force=True)
        raise ctx.fail("E_BAD_ROWS", "rows were malformed", seen[0])

    @types.register("a.reports_message", Empty, max_attempts=1)
    def reports_message(ctx, payload):  # throttled: due after the window
        return outcome_of(lambda: ctx.progress(10, message=seen[0]), ProgressRejectedError, seen)

    @types.register("a.fails_with_message", Empty, max_attempts=3)
    def fails_with_message(ctx, payload):
        raise ctx.fail("E_DUMP", seen[0], 20)

    @types.register("a.fail_long_message", Empty)
    def fail_long_message(ctx, payload):
        ctx.progress(10, force=True)
        raise ctx.fail("E_DUMP", "x" * (MAX_PROGRESS_MESSAGE_CHARS + 50_000), 20)  # e.g. a whole stderr

    @types.register("a.artifact_type", Empty, max_attempts=1)
    def artifact_type(ctx, payload):
        return outcome_of(lambda: ctx.artifact("report.txt", "hello", content_type=seen[0]), InvalidArtifactError,
                          seen, taken="stored")

    @types.register("a.artifact_data", Empty, max_attempts=1)
    def artifact_data(ctx, payload):
        return outcome_of(lambda: ctx.artifact("report.json", seen[0]), InvalidArtifactError, seen, taken="stored")

    @types.register("a.numeric_code", Empty, max_attempts=3)
    def numeric_code(ctx, payload):
        raise FatalJobError("upstream answered 404", code=404)  # e.g. code=response.status_code

    @types.register("a.long_code", Empty, max_attempts=3)
    def long_code(ctx, payload):
        raise RetryableJobError("upstream busy", code="c" * 5_000)

    @types.register("a.missing_column", Empty, max_attempts=3)
    def missing_column(ctx, payload):
        def read_row(row):
            return row["missing_column"]
        return read_row({})

    return types


@pytest.fixture
def seen():
    return []


@pytest.fixture
def artifacts():
    return InMemoryArtifactStore(InMemoryBlobStore())


@pytest.fixture
def env(store, queue, clock, seen, artifacts):
    types = make_types(seen)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    return lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, artifacts=artifacts)


def run(env, queue, type_, payload=None):
    lifecycle, runner = env
    lifecycle.submit(tenant="acme", user="ann", type=type_, payload=payload or {})
    (message,) = queue.drain()
    return runner.run(message)


@pytest.mark.parametrize("kind", sorted(BASE_EXCEPTIONS))
def test_a_handler_raising_a_base_exception_ends_its_attempt_instead_of_escaping_the_runner(env, queue, store, kind):
    """SystemExit, asyncio.CancelledError or a library's own BaseException ends the attempt
`handler_error` (retried) instead of leaving runner.run with the job `running`."""
    try:
        after = run(env, queue, f"a.{kind}")
    except BaseException as exc:  # noqa: B036 - what the worker process would die of
        (job,) = store._jobs.values()
        pytest.fail(f"{type(exc).__name__} escaped JobRunner.run; the job was left {job.status.value}")
    assert after.status == JobStatus.RETRYING and after.error.code == "handler_error"


def test_an_exception_whose_str_raises_still_ends_the_attempt(env, queue, store):
    """A broken __str__ does not keep the attempt from ending: the error names the type."""
    try:
        after = run(env, queue, "a.unprintable")
    except Exception as exc:
        (job,) = store._jobs.values()
        pytest.fail(f"{type(exc).__name__}: {exc} escaped JobRunner.run; the job was left {job.status.value}")
    assert after.status == JobStatus.RETRYING and after.error.code == "handler_error"
    assert "Unprintable" in after.error.message


def test_a_handler_that_swallows_its_timeout_does_not_complete(env, queue):
    """docs/jobs.md: timeout_s is enforced. A handler that catches the timeout (`except
Exception` around a retry loop) and returns late fails `timeout` instead of completing."""
    after = run(env, queue, "a.swallows_timeout")
    assert after.status == JobStatus.FAILED and after.error is not None and after.error.code == "timeout", \
        (after.status, after.result)


def test_a_payload_model_with_an_alias_reaches_its_handler(env, queue):
    """The payload is stored by alias ({"from": ...}), which the worker's model validates again."""
    after = run(env, queue, "a.aliased", {"from": "warehouse-7"})
    assert after.status == JobStatus.COMPLETED, after.error
    assert after.result == {"from": "warehouse-7"}


class Month(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as jobs.md's example: an unknown field is a 422
    month: str

    @computed_field
    @property
    def year(self) -> str:
        return self.month[:4]


class Months(BaseModel):
    model_config = ConfigDict(extra="forbid")
    months: list[Month]


@pytest.mark.parametrize("model, payload, seen_by_handler", [
    (Month, {"month": "2027-01"}, "2027"),
    (Months, {"months": [{"month": "2027-01"}]}, "2027"),
], ids=["field", "nested_model"])
def test_a_payload_model_with_a_computed_field_reaches_its_handler(store, queue, clock, model, payload,
                                                                     seen_by_handler):
    """The payload was stored with the model's computed fields, which its `extra="forbid"` then
    refused in the worker: every job of the type, accepted with 202, failed `invalid_payload`."""
    def year(ctx, payload):
        return (payload if isinstance(payload, Month) else payload.months[0]).year

    submitted, after = submitted_and_run(store, queue, clock, model, payload, year)
    assert submitted.payload == payload
    assert (after.status, after.result) == (JobStatus.COMPLETED, seen_by_handler), after.error


class Delivery(BaseModel):
    due: date
    order: uuid.UUID
    amount: Decimal


def test_a_payload_of_dates_uuids_and_decimals_is_stored_as_json_and_reaches_its_handler_as_them(store, queue, clock):
    """A job's payload is stored as JSON (a DynamoDB item, GET /jobs/{id}): the model's dump in
    JSON mode, a date, a UUID and a Decimal written as the strings a client sent, which the
    worker's model reads back as the date, UUID and Decimal the handler is given."""
    payload = {"due": "2027-01-31", "order": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "amount": "12.50"}

    def read(ctx, payload):
        return [type(v).__name__ for v in (payload.due, payload.order, payload.amount)]

    submitted, after = submitted_and_run(store, queue, clock, Delivery, payload, read)
    assert submitted.payload == payload
    assert (after.status, after.result) == (JobStatus.COMPLETED, ["date", "UUID", "Decimal"]), after.error


def submitted_and_run(store, queue, clock, model, payload, handler):
    """(the job as submitted, the job after its one attempt) of a type of `model` run by
    `handler`, submitted with `payload`."""
    types = JobTypeRegistry()
    types.register("reports.monthly", model)(handler)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submitted = lifecycle.submit(tenant="acme", user="ann", type="reports.monthly", payload=payload)
    (message,) = queue.drain()
    return submitted, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(message)


class WithExcluded(BaseModel):
    month: str
    requested_by: str = Field(default="", exclude=True)


class NestedExcluded(BaseModel):
    reports: list[WithExcluded] = []


@dataclasses.dataclass
class ExcludedInADataclass:
    month: str
    requested_by: str = Field(default="", exclude=True)


class InDataclass(BaseModel):
    report: ExcludedInADataclass


class Renamed(BaseModel):
    month: str
    requested_by: str = Field(default="", serialization_alias="requestedBy")  # taken as requested_by only


def refused_at_register(name: str, payload_model) -> str:
    """The ValueError `register` raises for a type `name` with `payload_model`, as text; the
    registry it was refused by holds no type."""
    local = JobTypeRegistry()
    with pytest.raises(ValueError) as refused:
        local.register(name, payload_model)(lambda ctx, payload: None)
    assert local.names() == []
    return str(refused.value)


@pytest.mark.parametrize("model, why", [
    (WithExcluded, "requested_by: exclude=True"),
    (NestedExcluded, "reports.requested_by: exclude=True"),
    (InDataclass, "report.requested_by: exclude=True"),
    (Renamed, "requested_by: stored as 'requestedBy', its serialization_alias, which it does not take"),
], ids=["field", "nested_model", "nested_dataclass", "serialization_alias"])
def test_a_payload_model_with_a_field_its_dump_leaves_out_is_refused_at_register(model, why):
    """A payload is stored as its model dumps it: a field with exclude=True was dropped there, so
    its handler got the default (or, for a required field, every job failed invalid_payload in
    the worker after a 202)."""
    refusal = refused_at_register("reports.build", model)
    assert f"the payload model of 'reports.build' has a field its dump loses ({why})" in refusal


class CamelLine(BaseModel):
    sku_id: str = Field(validation_alias="skuId", serialization_alias="sku_id")  # taken as skuId, stored by name


class CamelOrder(BaseModel):
    lines: list[CamelLine]


class EitherSpelling(BaseModel):
    # taken as sku or skuId, stored as skuId: one of the names it takes
    sku_id: str = Field(validation_alias=pydantic.AliasChoices("sku", "skuId"), serialization_alias="skuId")


def test_a_nested_field_stored_under_its_own_name_registers_and_reaches_its_handler(store, queue, clock):
    """A field submitted in camelCase and stored under its Python name (a serialization_alias
    equal to the name, which the worker's read of a stored payload takes) is taken at register
    wherever the model sits, a list of lines inside the order as at the top."""
    _, after = submitted_and_run(store, queue, clock, CamelOrder, {"lines": [{"skuId": "A-1"}]},
                                 lambda ctx, payload: [line.sku_id for line in payload.lines])
    assert (after.status, after.result) == (JobStatus.COMPLETED, ["A-1"]), after.error


def test_a_field_stored_under_one_of_the_names_it_takes_registers_and_reaches_its_handler(store, queue, clock):
    """A serialization_alias that is one of the field's AliasChoices is a name its stored
    payload is read back under: the type registers and its handler gets the value."""
    submitted, after = submitted_and_run(store, queue, clock, EitherSpelling, {"sku": "A-1"},
                                         lambda ctx, payload: payload.sku_id)
    assert submitted.payload == {"skuId": "A-1"}
    assert (after.status, after.result) == (JobStatus.COMPLETED, "A-1"), after.error


class Folder(BaseModel):
    name: str
    folders: list["Folder"] = []


class FolderWithExcluded(BaseModel):
    name: str
    folders: list["FolderWithExcluded"] = []
    owner: Optional[WithExcluded] = None


def test_a_payload_model_that_holds_itself_registers_and_its_job_gets_the_whole_tree(store, queue, clock):
    """A tree of folders is a model whose field lists the model itself: the checks at register
    walk each model once, so the walk ends and the type registers, its handler gets every level;
    a field its dump loses is still found below the recursion."""
    tree = {"name": "root", "folders": [{"name": "a", "folders": [{"name": "a1", "folders": []}]}]}

    def depth(ctx, payload):
        levels, layer = 0, [payload]
        while layer:
            levels, layer = levels + 1, [child for folder in layer for child in folder.folders]
        return levels

    _, after = submitted_and_run(store, queue, clock, Folder, tree, depth)
    assert (after.status, after.result) == (JobStatus.COMPLETED, 3), after.error
    assert "(owner.requested_by: exclude=True)" in refused_at_register("folders.sync", FolderWithExcluded)


class Cents(BaseModel):
    model_config = ConfigDict(strict=True)
    amount: int

    @field_serializer("amount")
    def as_text(self, amount: int) -> str:  # e.g. for a report: "1,250"
        return f"{amount:,}"


class Wrapped(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int

    @model_serializer
    def envelope(self) -> dict:
        return {"data": {"amount": self.amount}}


class PlainAnnotated(BaseModel):
    model_config = ConfigDict(strict=True)
    amount: Annotated[int, PlainSerializer(str)]


class WrapInList(BaseModel):
    amounts: list[Annotated[int, WrapSerializer(lambda value, dump: dump(value) * 100)]] = []


class NestedSerializer(BaseModel):
    lines: Optional[list[Cents]] = None


def cents_line(make_dataclass):
    """A line whose amount a field serializer writes as text ("1,250"), made a dataclass by
    `make_dataclass` (pydantic's or the standard library's)."""

    class CentsLine:
        amount: int

        @field_serializer("amount")
        def as_text(self, amount: int) -> str:
            return f"{amount:,}"

    return make_dataclass(CentsLine)


PydanticCentsLine = cents_line(pydantic_dataclass)
PlainCentsLine = cents_line(dataclasses.dataclass)


class InPydanticDataclass(BaseModel):
    model_config = ConfigDict(strict=True)
    line: PydanticCentsLine


class InPlainDataclass(BaseModel):
    line: PlainCentsLine


class CentsRow(TypedDict):
    amount: Annotated[int, PlainSerializer(lambda amount: f"{amount:,}")]


class InTypedDict(BaseModel):
    rows: list[CentsRow]


class OldEncoders(BaseModel):
    model_config = ConfigDict(json_encoders={int: str}, strict=True)
    amount: int


@pydantic_dataclass(config=ConfigDict(json_encoders={int: str}))
class EncodedLine:
    amount: int


class InEncodedDataclass(BaseModel):
    line: EncodedLine


@dataclasses.dataclass
class EnvelopedLine:
    amount: int

    @model_serializer
    def envelope(self) -> dict:
        return {"data": {"amount": self.amount}}


class InEnvelopedDataclass(BaseModel):
    line: EnvelopedLine


@pytest.mark.parametrize("model, payload, why", [
    (Cents, {"amount": 1250}, "amount: @field_serializer 'as_text'"),
    (Wrapped, {"amount": 1250}, "the model: @model_serializer 'envelope'"),
    (PlainAnnotated, {"amount": 1250}, "amount: PlainSerializer"),
    (WrapInList, {"amounts": [1250]}, "amounts: WrapSerializer"),
    (NestedSerializer, {"lines": [{"amount": 1250}]}, "lines.amount: @field_serializer 'as_text'"),
    (InPydanticDataclass, {"line": {"amount": 1250}}, "line.amount: @field_serializer 'as_text'"),
    (InPlainDataclass, {"line": {"amount": 1250}}, "line.amount: @field_serializer 'as_text'"),
    (InTypedDict, {"rows": [{"amount": 1250}]}, "rows.amount: PlainSerializer"),
    (OldEncoders, {"amount": 1250}, "the model: json_encoders"),
    (InEncodedDataclass, {"line": {"amount": 1250}}, "line: json_encoders"),
    (InEnvelopedDataclass, {"line": {"amount": 1250}}, "line: @model_serializer 'envelope'"),
], ids=["field_serializer", "model_serializer", "plain_serializer", "wrap_serializer_in_a_list", "nested_model",
        "nested_pydantic_dataclass", "nested_dataclass", "nested_typed_dict", "json_encoders",
        "json_encoders_of_a_nested_pydantic_dataclass", "model_serializer_of_a_nested_dataclass"])
def test_a_payload_model_with_a_serializer_of_its_own_is_refused_at_register(model, payload, why):
    """A payload is stored as its model dumps it, and the worker validates that dump again: a
    serializer of the model's own writes what its validation need not take ("1,250" for an
    int, an envelope), so the type was registered, every submission accepted (202), and every
    job failed `invalid_payload` in the worker (or its handler got another value). Refused at
    register, saying where; what the submission gave is taken as it was before."""
    model.model_validate(payload)  # a valid payload: what a user would submit
    refusal = refused_at_register("invoices.send", model)
    assert f"the payload model of 'invoices.send' has a serializer of its own ({why})" in refusal


def custom_amount(serialize):
    """An int type of a library's, with a pydantic schema of its own that writes its dump with
    `serialize`: no field, annotation or decorator of the model says so, so register cannot see it."""

    class Amount(int):
        @classmethod
        def __get_pydantic_core_schema__(cls, source, handler):
            return core_schema.no_info_after_validator_function(
                cls, core_schema.int_schema(strict=True),
                serialization=core_schema.plain_serializer_function_ser_schema(serialize))

    return Amount


@pytest.mark.parametrize("serialize, why", [
    (lambda amount: f"{amount:,}", "amount: as stored: Input should be a valid integer"),
    (lambda amount: amount * 100, "payload: as stored, it validates to another payload than the one submitted"),
], ids=["does_not_validate_again", "validates_to_another_value"])
def test_a_payload_its_model_does_not_read_back_as_stored_is_refused_at_submit(store, queue, clock, serialize, why):
    """What register cannot see (a type's own schema) is checked on each payload: the one stored
    must be what the worker reads back as the one submitted. Else the job, accepted (202), failed
    `invalid_payload` in the worker, or its handler got another amount than submitted: it is
    refused now, 422 `invalid_payload` saying so, nothing stored or queued."""
    from pydantic import create_model

    from chalicelib.domain.errors import InvalidPayloadError

    types = JobTypeRegistry()
    model = create_model("Invoice", amount=(custom_amount(serialize), ...))
    types.register("invoices.send", model)(lambda ctx, payload: int(payload.amount))
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    with pytest.raises(InvalidPayloadError) as refused:
        lifecycle.submit(tenant="acme", user="ann", type="invoices.send", payload={"amount": 1250})
    assert "does not read back the payload it stores" in refused.value.message, refused.value.message
    assert [d["type"] for d in refused.value.details] == ["not_stored_as_given"], refused.value.details
    assert why in refused.value.with_fields(), refused.value.with_fields()
    assert store._jobs == {} and queue.drain() == []


class Reading(BaseModel):
    celsius: float
    history: list[float] = []


@pytest.mark.parametrize("payload, loc", [
    ({"celsius": float("inf")}, ["celsius"]),
    ({"celsius": 1.0, "history": [2.0, float("nan")]}, ["history", 1]),
], ids=["infinity", "nan_in_a_list"])
def test_a_spawned_payload_holding_nan_or_infinity_is_refused_at_the_call(store, queue, clock, payload, loc):
    """POST /jobs refuses NaN and Infinity with the JSON that carries them (1e400 included); a
    float field takes them from a handler's `ctx.spawn`, and the child was made, its payload
    stored as null and failed `invalid_payload` in the worker. Refused at the call now, as docs/jobs.md
    says of what POST /jobs would refuse, naming the value's place; no child made."""
    refused = spawn_refused(store, queue, clock, Reading, payload)
    assert refused.details == [{"loc": loc, "msg": "NaN or Infinity is not a JSON number", "type": "not_json"}]
    assert "NaN or Infinity" in refused.with_fields()


class Named(BaseModel):
    name: str


def test_a_spawned_payload_holding_a_lone_surrogate_is_refused_at_the_call(store, queue, clock):
    """POST /jobs refuses a body holding a lone surrogate (no UTF-8 encodes it, no strict JSON
    reader takes it); a str field takes one from a handler's `ctx.spawn` (a name read with
    surrogateescape), and no store could write the child it would make. Refused at the call, as
    `not_unicode`; no child made."""
    from chalicelib.domain.text import NOT_UNICODE

    refused = spawn_refused(store, queue, clock, Named, {"name": "caf\udcff"})
    assert refused.details == [{"loc": [], "msg": f"text {NOT_UNICODE}", "type": "not_unicode"}]


def spawn_refused(store, queue, clock, model, payload):
    """The InvalidPayloadError a handler's `ctx.spawn` of a `model` type with `payload` raised,
    once the parent completed with no child and nothing more queued or stored."""
    from chalicelib.domain.errors import InvalidPayloadError

    types, refused = JobTypeRegistry(), []
    types.register("sensors.store", model)(lambda ctx, payload: None)

    @types.register("sensors.read", Empty, max_attempts=1)
    def read(ctx, _):
        try:
            ctx.spawn("sensors.store", payload)
        except InvalidPayloadError as exc:
            refused.append(exc)
        return "read"

    parent = run_once(JobLifecycle(store, queue, types, clock=clock), queue, types, "sensors.read")
    assert parent.status == JobStatus.COMPLETED and parent.children == [], parent.children
    assert queue.drain() == [] and len(store._jobs) == 1 and len(refused) == 1, refused
    return refused[0]


class CamelCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(validation_alias="userId")  # camelCase input, the field's own name in Python


@pytest.mark.parametrize("model, payload, field, stored", [
    (CamelCase, {"userId": "u-7"}, "user_id", {"user_id": "u-7"}),
    (Aliased, {"from": "warehouse-7"}, "from_", {"from": "warehouse-7"}),
], ids=["validation_alias", "alias"])
def test_a_payload_model_with_a_validation_alias_reaches_its_handler(store, queue, clock, model, payload, field,
                                                                      stored):
    """The payload is stored as its model dumps it by alias (as the client sent it, and GET
    /jobs/{id} shows it); a field with only a validation_alias has none to dump by, so it was
    stored under its name, which the worker's model refused: every job of the type, accepted
    with 202, failed `invalid_payload`. It is taken by name in the worker now."""
    types = JobTypeRegistry()
    types.register("users.sync", model)(lambda ctx, payload: getattr(payload, field))
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    assert lifecycle.submit(tenant="acme", user="ann", type="users.sync", payload=payload).payload == stored
    (message,) = queue.drain()
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)
    after = runner.run(message)
    assert (after.status, after.result) == (JobStatus.COMPLETED, next(iter(payload.values()))), after.error
    lifecycle.rerun(tenant="acme", user="ann", job_id=after.id)  # the stored payload, submitted again
    (message,) = queue.drain()
    again = runner.run(message)
    assert (again.status, again.result) == (JobStatus.COMPLETED, after.result), again.error


@pytest.mark.parametrize("model, payload", [
    (CamelCase, {"user_id": "u-7"}),
    (Aliased, {"from_": "warehouse-7"}),
], ids=["validation_alias", "alias"])
def test_a_submitted_payload_naming_a_field_by_its_python_name_is_refused(store, queue, clock, model, payload):
    """A client's payload is read as the type's `payload_schema` (GET /job-types) shows it: a
    field by its alias. Only a rerun's payload, as its original stored it, is read by name too;
    a submit taking names would accept payloads its own schema says are invalid."""
    from chalicelib.domain.errors import InvalidPayloadError

    types = JobTypeRegistry()
    types.register("users.sync", model)(lambda ctx, payload: None)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    with pytest.raises(InvalidPayloadError):
        lifecycle.submit(tenant="acme", user="ann", type="users.sync", payload=payload)
    assert queue.drain() == [] and store._jobs == {}


class NestedSecret(BaseModel):
    credentials: list[WithSecret] = []


class Credentials(TypedDict):
    token: SecretStr


class SecretInTypedDict(BaseModel):
    credentials: Credentials


class WithSecretBytes(BaseModel):
    token: pydantic.SecretBytes


class WithGenericSecret(BaseModel):
    token: Optional[pydantic.Secret[int]] = None


@pytest.mark.parametrize("model", [WithSecret, NestedSecret, SecretInTypedDict, WithSecretBytes, WithGenericSecret],
                         ids=["field", "nested_model", "nested_typed_dict", "secret_bytes", "generic_secret"])
def test_a_payload_model_with_a_secret_is_refused_at_register(model):
    """A payload is stored on the job and shown by GET /jobs/{id} (and model_dump writes a
    SecretStr as '**********', so its handler would get the mask): a model holding a secret
    is refused when it is registered, saying to pass a reference to the secret instead. Every
    secret type pydantic has is one: SecretBytes, and Secret[...] of any type, alike."""
    refusal = refused_at_register("a.secret", model)
    assert "secret" in refusal and "token" in refusal and "reference" in refusal


class Deadline(BaseModel):
    due: pydantic.FutureDatetime


class NestedFutureDate(BaseModel):
    days: Optional[list[pydantic.FutureDate]] = None


class FutureInTypedDict(BaseModel):
    window: TypedDict("Window", {"until": pydantic.FutureDatetime})


@pytest.mark.parametrize("model, where", [(Deadline, "due"), (NestedFutureDate, "days"),
                                          (FutureInTypedDict, "window.until")],
                         ids=["field", "in_a_list", "nested_typed_dict"])
def test_a_payload_model_with_a_field_that_must_lie_in_the_future_is_refused_at_register(model, where):
    """The worker validates the stored payload again when the job runs: a FutureDatetime that
    was ahead at submit is behind after a delay or a retry, and the job would fail
    invalid_payload after its 202. Such a model is refused when registered."""
    refusal = refused_at_register("a.deadline", model)
    assert "must lie in the future" in refusal
    assert f"({where})" in refusal and "compare it with the time in the handler" in refusal


def test_ctx_spawn_after_the_job_ended_is_refused(env, queue, store, seen):
    """A ctx kept past the handler's return (a thread, a callback) spawns nothing more: the
completed job gets no child."""
    done = run(env, queue, "a.keeps_ctx")
    assert done.status == JobStatus.COMPLETED
    (ctx,) = seen
    with pytest.raises(JobpipeError):
        ctx.spawn("a.keeps_ctx", {})
    assert store.get(done.id, mark_gone=False).children == []


@pytest.mark.parametrize("late", ["complete", "fail"])
def test_ctx_complete_or_fail_after_the_job_ended_is_refused_saying_so(env, queue, store, seen, late):
    """Nor does it record a result or a failure that would be taken for the job's: the call
    raises AttemptEndedError, naming the attempt, and the completed job is unchanged."""
    from chalicelib.domain.errors import AttemptEndedError

    done = run(env, queue, "a.keeps_ctx")
    (ctx,) = seen
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {done.id} has ended"):
        if late == "complete":
            ctx.complete({"late": True}, "after the return")
        else:
            ctx.fail("E_LATE", "after the return", 50)
    after = store.get(done.id, mark_gone=False)
    assert after.status == JobStatus.COMPLETED and after.result == "ok" and after.error is None


@pytest.mark.parametrize("late", ["progress", "complete", "fail", "spawn", "artifact"])
def test_a_ctx_kept_past_a_timed_out_attempt_is_refused_as_any_ended_attempts(env, queue, store, seen, late):
    """docs/jobs.md: once the handler returned or raised, every call that writes raises
    AttemptEndedError (`attempt_ended`). A thread that kept the ctx of an attempt that timed
    out got JobTimeoutError instead (code `timeout`, "timed out"), which its
    `except AttemptEndedError` did not catch."""
    from chalicelib.domain.errors import AttemptEndedError

    calls = {
        "progress": lambda ctx: ctx.progress(90, force=True),
        "complete": lambda ctx: ctx.complete({"late": True}),
        "fail": lambda ctx: ctx.fail("E_LATE", "after the timeout"),
        "spawn": lambda ctx: ctx.spawn("a.keeps_ctx", {}),
        "artifact": lambda ctx: ctx.artifact("late.txt", "after the timeout"),
    }
    timed_out = run(env, queue, "a.keeps_ctx_past_its_timeout")
    assert timed_out.status == JobStatus.FAILED and timed_out.error.code == "timeout", timed_out.error
    (ctx,) = seen
    with pytest.raises(AttemptEndedError, match=f"attempt 1 of job {timed_out.id} has ended"):
        calls[late](ctx)
    after = store.get(timed_out.id, mark_gone=False)
    assert (after.status, after.error, after.children) == (timed_out.status, timed_out.error, [])


def test_ctx_artifact_after_the_job_ended_is_refused(env, queue, artifacts, seen):
    """Nor does it store an artifact on the finished job."""
    done = run(env, queue, "a.keeps_ctx")
    (ctx,) = seen
    with pytest.raises(JobpipeError):
        ctx.artifact("late.txt", "written after the job completed")
    assert artifacts.list(done.id).artifacts == []


@pytest.mark.parametrize("details", [{1: "first row"}, {"by_day": {None: 0}}], ids=["int_key", "nested_none_key"])
def test_progress_details_with_non_text_keys_are_refused_as_progress_rejected(env, queue, seen, details):
    """docs/jobs.md: details are "a JSON object ... Anything else ... raises ProgressRejectedError
at the call": {1: ...} is refused there, and the handler can catch it; a None key too (JSON
would write it as "null")."""
    seen.append(details)
    after = run(env, queue, "a.details_int_keys")
    assert after.status == JobStatus.COMPLETED and after.result == "refused as documented", after.error
    assert isinstance(seen[0], ProgressRejectedError)


def test_fail_job_with_a_long_message_keeps_the_progress_message_bounded(env, queue):
    """docs/jobs.md: a progress `message` is at most 300,000 characters: fail(..., percent),
which is never refused, cuts a longer message to that bound."""
    after = run(env, queue, "a.fail_long_message")
    assert after.status == JobStatus.FAILED and after.error.code == "E_DUMP"
    assert len(after.progress.message) <= MAX_PROGRESS_MESSAGE_CHARS


@pytest.mark.parametrize("content_type", ["text/plain\r\nSet-Cookie: session=stolen", "text/plain\n", 42, "", 0],
                         ids=["crlf_header_injection", "trailing_newline", "not_text", "empty", "zero"])
def test_an_artifact_content_type_that_is_no_media_type_is_refused(env, queue, seen, content_type):
    """The content type is sent to S3 and served back as the Content-Type header: one that is not
a media type (CR/LF, a trailing newline, not text) is refused with InvalidArtifactError; so is
an empty one (or 0), which was taken for none and stored under the default type unseen."""
    seen.append(content_type)
    after = run(env, queue, "a.artifact_type")
    assert after.status == JobStatus.COMPLETED and after.result == "refused", (after.result, after.error)


def test_register_refuses_a_payload_model_that_is_not_pydantic():
    """docs/jobs.md: "A type that breaks a rule fails `register` at import": a payload model
that is not a pydantic BaseModel subclass is refused there, not at every submission."""
    types = JobTypeRegistry()
    with pytest.raises((TypeError, ValueError)):
        types.register("a.not_a_model", dict)(lambda ctx, payload: None)


def test_a_handler_error_whose_code_is_not_text_ends_the_attempt_with_it_as_text(env, queue):
    """`FatalJobError(..., code=404)`: the job fails at once with code "404", as `fail_job(ctx,
404, ...)` does, instead of the worker failing to record it (the job then `running` until its
lease ran out and the handler run again)."""
    after = run(env, queue, "a.numeric_code")
    assert after.status == JobStatus.FAILED and after.attempts == 1
    assert (after.error.code, after.error.message) == ("404", "upstream answered 404")


def test_a_handler_error_code_is_kept_as_a_label_not_a_paragraph(env, queue):
    after = run(env, queue, "a.long_code")
    assert after.status == JobStatus.RETRYING and after.error.code == "c" * MAX_LABEL_CHARS


def test_a_handler_error_given_no_readable_code_keeps_its_classs():
    """`code=0` is a code, kept as "0" as 404 is "404"; an empty or blank code, or one whose
    str() raises, names none: the error keeps its class's (`fatal_error`, `retryable_error`),
    which consumers branch on, not the `handler_error` of an exception jobpipe did not make."""
    assert RetryableJobError("exit status", code=0).code == "0"
    for code in ("", "   ", Unprintable(), None):
        assert (FatalJobError("m", code=code).code, RetryableJobError("m", code=code).code) \
            == ("fatal_error", "retryable_error"), repr(code)


@pytest.mark.parametrize("type_", ["a.missing_column", "a.unprintable"])
def test_a_handlers_failure_is_logged_with_its_message_and_where_it_was_raised(store, queue, clock, seen, type_):
    """The job's error says what failed; the worker's log line of the failure says where too:
    the end of the handler's traceback, with the function and line that raised."""
    types, observed = make_types(seen), []
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0,
                       observe=lambda event, job, extra: observed.append((event, extra)))
    lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
    after = runner.run(queue.drain()[0])
    (extra,) = [extra for event, extra in observed if event == "retried"]
    assert extra["error_code"] == "handler_error" and extra["error_message"] == after.error.message
    raised_in = "read_row" if type_ == "a.missing_column" else "unprintable"
    assert f", in {raised_in}\n" in extra["traceback"], extra["traceback"]
    assert after.error.message.split(":")[0] in extra["traceback"].rstrip().splitlines()[-1]  # the exception


def test_register_refuses_a_generator_function_as_a_handler():
    """A handler that yields would return a generator whose body never runs (its progress never
reported, its job failed `result_not_serializable`): `register` refuses it at import, as it
does an `async def` one, saying why."""
    types = JobTypeRegistry()

    def yields_rows(ctx, payload):
        ctx.progress(50)
        yield 1

    with pytest.raises(TypeError, match="generator") as refused:
        types.register("a.yields", Empty)(yields_rows)
    assert "never run" in str(refused.value)
    assert types.names() == []


@pytest.mark.parametrize("result", [{1: "int key", "1": "str key"}, {"rows": [{"ok": True}, {(2, 3): "cell"}]},
                                    {"by_day": {None: 0}}],
                         ids=["clashing_keys", "nested_tuple_key", "nested_none_key"])
def test_a_result_with_keys_that_are_not_text_fails_its_job_result_not_serializable(env, queue, seen, result):
    """JSON keys are text: stored, `{1: "int key", "1": "str key"}` would read back with one entry
lost, so instead of completing with it the job fails `result_not_serializable` (not retried),
its message naming the key, as progress details with such keys are refused."""
    seen.append(result)
    after = run(env, queue, "a.returns")
    assert after.status == JobStatus.FAILED and after.error.code == "result_not_serializable", \
        (after.status, after.result)
    assert "keys" in after.error.message and "text" in after.error.message


def nested(levels):
    data = []
    for _ in range(levels - 1):
        data = [data]
    return data


@pytest.mark.parametrize("data, says", [
    ({"ratio": float("nan")}, "NaN"), ([1, float("inf")], "Infinity"), ({"rows": [{"x": -float("inf")}]}, "NaN"),
    ({"at": datetime(2027, 1, 1, tzinfo=timezone.utc)}, "datetime"), (nested(5_000), "levels"),
    (nested(MAX_JSON_DEPTH + 1), "levels"),
    ({1: "int key", "1": "str key"}, "keys"), ([{"cells": {(0, 1): "a"}}], "keys"),
    ({"name": "caf\udcff"}, "lone surrogate"), ("caf\udcff", "lone surrogate"),
], ids=["nan", "infinity", "nested_minus_infinity", "datetime", "deep", "one_level_past", "int_key",
        "nested_tuple_key", "lone_surrogate_in_json", "lone_surrogate_in_text"])
def test_an_artifact_whose_data_is_not_json_is_refused_at_the_call(env, queue, seen, artifacts, data, says):
    """A dict/list artifact is stored as JSON: one holding NaN or Infinity (no JSON reader takes
it), a datetime, a key that is not text or nesting past 100 levels raises InvalidArtifactError
at the call saying why, which the handler can catch, instead of an invalid artifact stored or a
raw TypeError or RecursionError failing the attempt `handler_error` to be retried. So does text,
or JSON, holding a lone surrogate: no UTF-8 encodes it, and no strict JSON reader takes it."""
    seen.append(data)
    after = run(env, queue, "a.artifact_data")
    assert after.status == JobStatus.COMPLETED and after.result == "refused", (after.result, after.error)
    assert isinstance(seen[1], InvalidArtifactError) and says in str(seen[1])
    assert artifacts.list(after.id).artifacts == []


@pytest.mark.parametrize("name", ["maintenance.cleanup_runs", "maintenance.nightly_export"])
def test_register_refuses_a_product_type_named_under_the_reserved_maintenance_prefix(name):
    """Every deployment adds the built-in `maintenance.*` task types beside the product's, so a
product type named there would clash with them: `register` refuses it at import, naming the
reserved prefix, instead of every function failing at its first use."""
    refusal = refused_at_register(name, Empty)
    assert "reserved" in refusal and "'maintenance.'" in refusal


PERCENTS_NOT_FINITE = [float("inf"), -float("inf"), 10**400]


@pytest.mark.parametrize("percent", PERCENTS_NOT_FINITE, ids=["infinity", "minus_infinity", "int_past_float"])
def test_a_progress_percent_that_is_not_a_finite_number_is_refused_at_the_call(env, queue, seen, percent):
    """Infinity (a rate divided by zero) is no percent reached: ctx.progress refuses it, and a
whole number too large for a float, with ProgressRejectedError as it refuses NaN, instead of
taking it as 100 or 0, or raising a raw OverflowError."""
    seen.append(percent)
    after = run(env, queue, "a.reports_percent")
    assert after.status == JobStatus.COMPLETED and after.result == "refused", (after.result, after.error)
    assert isinstance(seen[1], ProgressRejectedError) and "finite" in str(seen[1])


def test_fail_job_with_an_infinite_percent_keeps_the_percent_reached(env, queue, seen):
    """fail(..., percent) is never refused: Infinity, an invalid percent, keeps the one reached
(30) instead of being written as 100, and the job fails with the handler's own code."""
    seen.append(float("inf"))
    after = run(env, queue, "a.fails_at_percent")
    assert after.status == JobStatus.FAILED and after.error.code == "E_BAD_ROWS", after.error
    assert after.progress.percent == 30


@pytest.fixture
def throttled(store, queue, clock, seen, artifacts):
    """As `env`, with the deployed progress window: a report is written when the window ends."""
    types = make_types(seen)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    return lifecycle, JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=60, artifacts=artifacts)


def test_a_throttled_report_whose_message_cannot_fit_the_record_is_refused_at_the_call(throttled, queue, seen):
    """docs/jobs.md ("Bounded"): a report that cannot fit the job's record raises
ProgressRejectedError at the call. 300,000 emoji are within the 300,000 characters, but take
1.2 MB in UTF-8, three times DynamoDB's 400 KB item: the call refuses them, saying so in bytes,
instead of accepting a report whose write is then refused when the window ends."""
    seen.append("😀" * MAX_PROGRESS_MESSAGE_CHARS)
    after = run(throttled, queue, "a.reports_message")
    assert after.status == JobStatus.COMPLETED and after.result == "refused", (after.result, after.error)
    assert "bytes" in str(seen[1]) and f"{MAX_PROGRESS_REPORT_BYTES:,}" in str(seen[1])


def test_fail_job_cuts_a_non_ascii_message_to_what_fits_the_record(env, queue, seen):
    """fail(..., percent) is never refused: its message, written as the progress message, is cut
to what a report may take in bytes (marked "…"), so the failure's write fits the record with
it, instead of the store refusing it and the message being cut to what an event carries."""
    seen.append("😀" * (MAX_PROGRESS_MESSAGE_CHARS + 1_000))  # e.g. a whole log of a tool that draws
    after = run(env, queue, "a.fails_with_message")
    assert after.status == JobStatus.FAILED and after.error.code == "E_DUMP"
    message = after.progress.message
    assert message.endswith("…") and len(message.encode()) <= MAX_PROGRESS_REPORT_BYTES
    assert len(message) > MAX_EVENT_TEXT_CHARS and set(message[:-1]) == {"😀"}


def test_a_spawned_child_takes_its_parents_priority_unless_given_one_as_jobs_md_says(store, queue, clock):
    """jobs.md said a job's priority is the one submitted, else its type's; a child spawned with
    no priority takes its parent's, not its type's: the page now says so where priorities are."""
    types = JobTypeRegistry()
    types.register("p.child", Empty, priority="low")(lambda ctx, payload: None)
    types.register("p.parent", Empty)(lambda ctx, payload: [ctx.spawn("p.child", {}),
                                                            ctx.spawn("p.child", {}, priority="normal")])
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    parent = run_once(lifecycle, queue, types, "p.parent", priority="high")
    inherited, given = (store.get(child_id, mark_gone=False) for child_id in parent.result)
    assert (inherited.priority, given.priority) == ("high", "normal")
    from pathlib import Path

    jobs = " ".join((Path(__file__).resolve().parents[2] / "docs/jobs.md").read_text().split())
    assert ("a spawned child's is the one given to `ctx.spawn`, else its parent's (not the child type's: "
            "a high-priority job's children run on the high queue)") in jobs


def test_a_spawned_child_is_made_in_the_scope_given_to_ctx_spawn(store, queue, clock):
    """`ctx.spawn(scope=...)`: the child is made in that scope (its completion records land
    where that scope's routes read them), not in the one it would have without it."""
    types = JobTypeRegistry()
    types.register("p.child", Empty)(lambda ctx, payload: None)
    types.register("p.parent", Empty)(lambda ctx, payload: [ctx.spawn("p.child", {}),
                                                            ctx.spawn("p.child", {}, scope="reports")])
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    parent = run_once(lifecycle, queue, types, "p.parent")
    inherited, given = (store.get(child_id, mark_gone=False) for child_id in parent.result)
    assert given.scope == "reports" and inherited.scope != "reports"


@pytest.mark.parametrize("priority", ["", 0, False])
def test_a_spawn_with_an_empty_priority_is_refused_as_post_jobs_refuses_it(store, queue, clock, priority):
    """jobs.md: what POST /jobs would refuse raises the same error at ctx.spawn. An empty priority
    (400 there) was taken for none and the child made at its parent's priority unseen."""
    from chalicelib.domain.errors import InvalidRequestError

    seen = []
    types = JobTypeRegistry()
    types.register("p.child", Empty)(lambda ctx, payload: None)

    def parent(ctx, payload):
        try:
            ctx.spawn("p.child", {}, priority=priority)
        except InvalidRequestError as exc:
            seen.append(exc)
        return "refused" if seen else "spawned"

    types.register("p.parent", Empty)(parent)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    after = run_once(lifecycle, queue, types, "p.parent")
    assert (after.result, after.children) == ("refused", []), after.error
    assert "priority must be high, normal or low" in seen[0].message


@pytest.mark.parametrize("percent", [None, 60])
def test_fail_job_with_a_message_whose_str_raises_still_fails_once_with_its_code(store, queue, clock, percent):
    """jobs.md: fail_job's message is never refused and the job fails once with its code. A
    message whose `str()` raised made fail_job raise that error instead: the attempt was retried
    as `handler_error`. It is named by its type, as an exception whose `str()` raises is."""
    from chalicelib.worker.helpers import fail_job

    types = JobTypeRegistry()
    types.register("p.fails", Empty, max_attempts=3)(
        lambda ctx, payload: fail_job(ctx, "UPSTREAM_DOWN", Unprintable(), progress_percent=percent))
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    after = run_once(lifecycle, queue, types, "p.fails")
    assert (after.status, after.attempts) == (JobStatus.FAILED, 1), after.error
    assert (after.error.code, after.error.message) == ("UPSTREAM_DOWN", "Unprintable")


def raising_once(store, queue, clock, error):
    """A job (3 attempts) whose handler raises `error()`, after its first attempt's run."""
    types = JobTypeRegistry()

    def handler(ctx, payload):
        raise error()

    types.register("p.fails", Empty, max_attempts=3)(handler)
    return run_once(JobLifecycle(store, queue, types, clock=clock), queue, types, "p.fails")


@pytest.mark.parametrize("error, status", [
    (lambda: FatalJobError(Unprintable(), code="UPSTREAM_DOWN"), JobStatus.FAILED),
    (lambda: RetryableJobError(Unprintable(), code="UPSTREAM_DOWN"), JobStatus.RETRYING),
], ids=["fatal", "retryable"])
def test_a_handler_error_whose_message_str_raises_still_ends_the_attempt(store, queue, clock, error, status):
    """jobs.md: an exception whose str() raises is recorded by its type name. A FatalJobError or
    RetryableJobError given such a message made the runner itself raise, the job left `running`
    until its lease ended."""
    after = raising_once(store, queue, clock, error)
    assert (after.status, after.attempts) == (status, 1)
    assert (after.error.code, after.error.message) == ("UPSTREAM_DOWN", "Unprintable")


@pytest.mark.parametrize("error, status, code", [
    (lambda: JobTimeoutError("the upstream export ran past its own deadline"), JobStatus.RETRYING, "timeout"),
    (lambda: TooManyChildrenError("job lists 2,000 children"), JobStatus.FAILED, "too_many_children"),
    (lambda: RecordFullError("no room to list a child"), JobStatus.FAILED, "record_full"),
    (lambda: AnswerFullError("no room in the answer"), JobStatus.FAILED, "answer_full"),
    (lambda: PayloadTooDeepError("the child's payload nests too deep"), JobStatus.FAILED, "payload_too_deep"),
    (lambda: PayloadGoneError.of("job-1"), JobStatus.FAILED, "payload_gone"),
], ids=["timeout", "too_many_children", "record_full", "answer_full", "payload_too_deep", "payload_gone"])
def test_each_named_failure_escaping_a_handler_is_retried_or_not_as_jobs_md_says(store, queue, clock, error, status,
                                                                               code):
    """jobs.md: a timeout is retried (a handler may raise JobTimeoutError for a deadline of its
    own), and the failures whose next attempt would meet the same wall (a list of children that
    only grows, a record or answer with no room, a payload nested too deep or gone from the
    bucket) fail the job at once under their own code, not after every attempt has met it."""
    after = raising_once(store, queue, clock, error)
    assert (after.status, after.attempts, after.error.code) == (status, 1, code)


def test_a_spawn_the_tenants_quota_refused_is_retried_no_sooner_than_the_quota_asked(store, queue, clock):
    """An uncaught QuotaExceededError from ctx.spawn retried the parent after the usual 1-2 s,
    though the quota asked for 10: a fan-out spent its attempts within seconds of a full quota
    and failed `quota_exceeded` for good, while the retry the docs promise could not succeed."""
    from chalicelib.domain.errors import QuotaExceededError

    def admit(tenant, pending=0):
        raise QuotaExceededError("tenant acme has 2 unfinished jobs, the most it may", retry_after_s=45)

    types = JobTypeRegistry()
    types.register("q.child", Empty)(lambda ctx, payload: None)
    types.register("q.parent", Empty, max_attempts=3)(lambda ctx, payload: ctx.spawn("q.child", {}))
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="q.parent", payload={})
    (message,) = queue.drain()
    queue.sent.clear()
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, admit=admit).run(message)
    assert (job.status, job.error.code) == (JobStatus.RETRYING, "quota_exceeded")
    ((_, _, delay),) = queue.sent
    assert delay >= 45
    assert (datetime.fromisoformat(job.not_before) - clock()).total_seconds() >= 45


class Numbered(BaseModel):
    n: int


def _fan_out_retried(store, queue, clock, second_payloads, *, fail_child=None):
    """A parent spawning `q.child {"n": 1}` and `{"n": 2}`, its first attempt failing after them
    (a retryable error, as a lost worker's would be); the second spawning `second_payloads` and
    returning. Returns (the parent as its second attempt left it, the children recorded)."""
    types = JobTypeRegistry()
    types.register("q.child", Numbered)(lambda ctx, payload: None)

    def parent(ctx, payload):
        if ctx.attempt == 1:
            for n in (1, 2):
                ctx.spawn("q.child", {"n": n})
            raise RetryableJobError("the worker went away after two spawns")
        return [ctx.spawn("q.child", p) for p in second_payloads]

    types.register("q.parent", Empty, max_attempts=3)(parent)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    made = lifecycle.submit(tenant="acme", user="ann", type="q.parent", payload={})
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0)
    (message,) = queue.drain()
    assert runner.run(message).status == JobStatus.RETRYING
    if fail_child is not None:  # that child of the first attempt ran and failed meanwhile
        child_id = store.get(made.id, mark_gone=False).children[fail_child - 1]
        store._jobs[child_id] = store._jobs[child_id].model_copy(update={"status": JobStatus.FAILED})
    retry = next(m for m in queue.drain() if m.job_id == made.id)
    clock.advance(60)
    ended = runner.run(retry)
    return ended, [store.get(c, mark_gone=False) for c in ended.children]


def test_a_retried_parent_takes_the_children_its_earlier_attempt_made_instead_of_making_them_again(
        store, queue, clock):
    """A parent's retry (after worker_lost, a timeout, an error) spawned its children anew: a
    fan-out whose worker died after spawning ran every child twice, and one of over 1,000
    children could not survive a lost worker (MAX_CHILDREN counts every attempt's)."""
    ended, children = _fan_out_retried(store, queue, clock, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert ended.status == JobStatus.COMPLETED
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}, {"n": 3}]  # three children, not five
    assert ended.result == ended.children


def test_a_retried_parent_makes_a_child_anew_where_it_asks_for_another_or_the_earlier_one_failed(
        store, queue, clock):
    ended, children = _fan_out_retried(store, queue, clock, [{"n": 1}, {"n": 5}], fail_child=1)
    # child 1 of the first attempt failed: spawned again; child 2's place asks for n=5: a new one
    assert [(c.payload, c.status) for c in children] == [
        ({"n": 1}, JobStatus.FAILED), ({"n": 2}, JobStatus.QUEUED), ({"n": 1}, JobStatus.QUEUED),
        ({"n": 5}, JobStatus.QUEUED)]
    assert ended.result == ended.children[2:]


def _spawned_after_an_unanswered_spawn(store, queue, clock, monkeypatch, *, lands, again, retry=True, refuse=(),
                                      unanswered_creates=(1,), listed: Optional[list] = None):
    """A parent whose first spawn (`q.child {"n": 1}`) the store did not answer: its transaction
    landed when `lands`, and StoreUnavailableError reached the handler, which caught it and
    spawned each of `again` (none when not `retry`), a spawn refused by the quota or not
    answered answering None: `refuse` holds the numbers (from 1) of the admissions that refuse,
    `unanswered_creates` those of the children's writes not answered (landing when `lands`).
    `listed` is given the children the handler's ctx.job lists as it returns. Returns (the
    parent as its attempt left it, the children it lists, the `pending` each admission was
    given, the children's messages)."""
    from chalicelib.domain.errors import QuotaExceededError, StoreUnavailableError

    types = JobTypeRegistry()
    types.register("q.child", Numbered)(lambda ctx, payload: None)

    def spawned(ctx, p):
        try:
            return ctx.spawn("q.child", p)
        except (QuotaExceededError, StoreUnavailableError):
            return None

    def parent(ctx, payload):
        try:
            ctx.spawn("q.child", {"n": 1})
        except StoreUnavailableError:
            pass
        ids = [spawned(ctx, p) for p in again] if retry else []
        if listed is not None:
            listed.extend(ctx.job.children)
        return ids

    types.register("q.parent", Empty)(parent)
    create_child = store.create_child
    creates = []

    def unanswered(child, attempt):
        creates.append(child.id)
        if len(creates) not in unanswered_creates:
            return create_child(child, attempt)
        if lands:
            create_child(child, attempt)
        raise StoreUnavailableError(f"could not spawn child {child.id}")

    monkeypatch.setattr(store, "create_child", unanswered)
    admitted = []

    def admit(tenant, pending=0):
        admitted.append(pending)
        if len(admitted) in refuse:
            raise QuotaExceededError(f"tenant {tenant} has as many unfinished jobs as it may", retry_after_s=30)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    made = lifecycle.submit(tenant="acme", user="ann", type="q.parent", payload={})
    (message,) = queue.drain()
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, admit=admit)
    ended = runner.run(message)
    assert ended.id == made.id
    children = [store.get(c, mark_gone=False) for c in ended.children]
    return ended, children, admitted, [m.job_id for m in queue.drain() if m.job_id != made.id]


def test_a_spawn_made_again_after_its_unanswered_try_landed_takes_that_child_on(store, queue, clock, monkeypatch):
    """A handler that caught the StoreUnavailableError of a spawn whose transaction had landed
    (its answer lost) and spawned the same child again got a second child: the spawn's index
    had moved on. The child the first try made is the one asked for: taken on, and sent."""
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 1}])
    assert ended.status == JobStatus.COMPLETED
    assert [c.payload for c in children] == [{"n": 1}]  # one child, not two
    assert ended.result == ended.children
    assert sent == ended.children  # its message goes out now, not only once the reconciler finds it due
    assert admitted == [0]  # taken on: admitted once, as it was made once


def test_a_spawn_made_again_after_its_unanswered_try_did_not_land_makes_the_child_in_its_place(
        store, queue, clock, monkeypatch):
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=False, again=[{"n": 1}])
    assert [c.payload for c in children] == [{"n": 1}] and ended.result == ended.children
    assert ended.children == [child_job_id(ended.id, 1, 1)]  # the place the unanswered spawn left
    assert sent == ended.children
    # The child the unanswered try did not make is not counted beside the one made in its place.
    assert admitted == [0, 0]


def test_another_spawn_after_an_unanswered_one_that_landed_goes_to_the_next_place(store, queue, clock, monkeypatch):
    """The unanswered spawn's child stays a child of the job, listed and counted; the spawn
    after it, another request, is made beside it, not in its stead."""
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 2}])
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}]
    assert ended.children == [child_job_id(ended.id, 1, 1), child_job_id(ended.id, 1, 2)]
    assert ended.result == ended.children[1:]
    assert admitted == [0, 1]  # the landed child counts as spawned before the next
    assert sent == ended.children  # each runs now: the first's message was never sent


def test_a_spawn_made_again_after_another_was_made_takes_on_the_child_its_unanswered_try_made(
        store, queue, clock, monkeypatch):
    """The handler, after the unanswered spawn of n=1, spawned n=2 (made at the next place, the
    first child passed over) and then n=1 again: that went to a fresh place and made a second
    n=1, its work run twice. It takes on the child its unanswered try made, whatever came
    between, making nothing and admitting nothing; that child's one message went out when n=2
    passed it over."""
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 2}, {"n": 1}])
    assert ended.status == JobStatus.COMPLETED
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}]  # one n=1, not two
    assert ended.children == [child_job_id(ended.id, 1, 1), child_job_id(ended.id, 1, 2)]
    assert ended.result == [ended.children[1], ended.children[0]]
    assert admitted == [0, 1]
    assert sorted(sent) == sorted(ended.children)  # each sent once: both run


def test_a_passed_over_child_is_taken_on_once(store, queue, clock, monkeypatch):
    """Two spawns of n=1 after the one passed over: the first takes its child on, the second
    (the handler asking for a second n=1) makes a new one, admitted beside the two made. The
    passed-over place is read by the spawns that look for its child, and by none once taken."""
    reads = []
    get = store.get
    monkeypatch.setattr(store, "get", lambda job_id, **kw: reads.append(job_id) or get(job_id, **kw))
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 2}, {"n": 1}, {"n": 1}, {"n": 3}])
    # the unanswered try's, n=2's at the held place (not again at the next), the first n=1's
    # take-on, and this test's own
    assert reads.count(ended.children[0]) == 4
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}, {"n": 1}, {"n": 3}]
    assert ended.result == [ended.children[1], ended.children[0], ended.children[2], ended.children[3]]
    assert admitted == [0, 1, 2, 3]
    assert sorted(sent) == sorted(ended.children)


def test_a_passed_over_child_is_listed_on_the_handlers_job_at_once(store, queue, clock, monkeypatch):
    """The unanswered spawn's child, passed over by the n=2 after it, is the job's: listed on
    ctx.job from then on (with the n=2's), as a spawn's own child is, so that what measures the
    attempt's answer (its reports, its spawns, its result) counts it before a write reads it
    back."""
    listed: list = []
    ended, children, _, _ = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 2}], listed=listed)
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}]
    assert listed == ended.children


@pytest.mark.parametrize(("unanswered_creates", "again", "pending"), [
    ((1,), [{"n": 1}, {"n": 2}], [0, 0, 1]),
    ((1, 2), [{"n": 1}, {"n": 1}, {"n": 2}], [0, 0, 0, 1]),
], ids=["made_there", "unanswered_there_again"])
def test_a_held_place_counts_its_child_once_however_often_it_is_tried(
        store, queue, clock, monkeypatch, unanswered_creates, again, pending):
    """A spawn the store did not answer, and that made no child, holds its place; trying it again
    there (unanswered once more, then made) counts the one child that place may hold once
    towards the quota: the admission of the spawn after it sees one child pending, not one per
    try, which would refuse a tenant's spawns it has room for."""
    ended, children, admitted, _ = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=False, again=again, unanswered_creates=unanswered_creates)
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}]
    assert admitted == pending


def test_a_spawn_refused_at_a_held_place_leaves_it_held(store, queue, clock, monkeypatch):
    """docs/jobs.md: a spawn the store did not answer keeps its place, and the attempt's next
    spawn is made there. One refused there (the quota) made no child: the place stays held,
    and the try after it makes the child in it, not at the place after."""
    ended, children, admitted, _ = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=False, again=[{"n": 1}, {"n": 1}], refuse={2})
    assert [c.payload for c in children] == [{"n": 1}]
    assert ended.children == [child_job_id(ended.id, 1, 1)] and ended.result == [None, ended.children[0]]


def test_a_retried_parent_takes_on_the_child_of_a_spawn_after_a_refused_one(store, queue, clock):
    """docs/jobs.md: a retried parent's spawn number n takes on the child its earlier attempt
    spawned as number n. A spawn refused by the quota is a number too: the first attempt's
    spawn 1 was refused and spawn 2 made its child; the retry, spawning both again, makes
    spawn 1's child and takes spawn 2's on, not running that child's work twice."""
    from chalicelib.domain.errors import QuotaExceededError

    types, admitted = JobTypeRegistry(), []
    types.register("q.child", Numbered)(lambda ctx, payload: None)

    @types.register("q.parent_retried", Empty, max_attempts=2)
    def parent(ctx, payload):
        ids = []
        for n in (1, 2):
            try:
                ids.append(ctx.spawn("q.child", {"n": n}))
            except QuotaExceededError:
                ids.append(None)
        if ctx.attempt == 1:
            raise ValueError("the connection closed")  # retried
        return ids

    def admit(tenant, pending=0):
        admitted.append(pending)
        if len(admitted) == 1:
            raise QuotaExceededError(f"tenant {tenant} has as many unfinished jobs as it may", retry_after_s=1)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    made = lifecycle.submit(tenant="acme", user="ann", type="q.parent_retried", payload={})
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, admit=admit)
    first = runner.run(queue.drain()[0])
    assert first.status == JobStatus.RETRYING and len(first.children) == 1, first
    clock.advance(max(delay for _, _, delay in queue.sent))
    (retry,) = [m for m in queue.drain() if m.job_id == made.id]
    ended = runner.run(retry)
    assert ended.status == JobStatus.COMPLETED
    children = [store.get(c, mark_gone=False) for c in ended.children]
    assert sorted(c.payload["n"] for c in children) == [1, 2], [c.payload for c in children]
    assert ended.result[1] == first.children[0]


def test_a_spawn_made_again_after_another_was_refused_takes_on_the_child_its_unanswered_try_made(
        store, queue, clock, monkeypatch):
    """The spawn between passed over the unanswered try's child too before the quota refused it
    (at the next place, which it then used up): the n=1 after it takes that child on, not a
    fresh place's."""
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 2}, {"n": 1}], refuse={2})
    assert ended.status == JobStatus.COMPLETED
    assert [c.payload for c in children] == [{"n": 1}]
    assert ended.result == [None, ended.children[0]]
    assert admitted == [0, 1]  # n=2's, refused; none for the child taken on
    assert sent == ended.children


def test_spawns_made_again_after_two_unanswered_ones_take_on_each_child_reading_each_place_once_a_spawn(
        store, queue, clock, monkeypatch):
    """n=1 and n=3 unanswered, both landed, each passed over by the spawn after it (n=2, n=4):
    trying each again takes its child on, in any order. A spawn reads each place passed over
    before it once, not again after passing over another place itself."""
    reads = []
    get = store.get
    monkeypatch.setattr(store, "get", lambda job_id, **kw: reads.append(job_id) or get(job_id, **kw))
    ended, children, admitted, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[{"n": 2}, {"n": 3}, {"n": 4}, {"n": 3}, {"n": 1}],
        unanswered_creates=(1, 3))
    assert [c.payload for c in children] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    first, second, third, fourth = ended.children
    assert ended.result == [second, None, fourth, third, first]
    assert admitted == [0, 1, 2, 3]
    assert sorted(sent) == sorted(ended.children)
    # n=1's place: its try, n=2's at it held, n=3's and n=4's looks, n=3's again, n=1's take-on,
    # this test's own; n=3's: its try, n=4's at it held, n=3's take-on, this test's own
    assert (reads.count(first), reads.count(third)) == (7, 4)


def test_a_spawn_after_an_unanswered_one_that_did_not_land_reads_no_passed_place(store, queue, clock, monkeypatch):
    """No place was passed over: the n=2 took the held place, and the spawns after it read only
    their own places, as in an attempt whose spawns were all answered."""
    reads = []
    get = store.get
    monkeypatch.setattr(store, "get", lambda job_id, **kw: reads.append(job_id) or get(job_id, **kw))
    ended, children, _, _ = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=False, again=[{"n": 2}, {"n": 1}])
    assert [c.payload for c in children] == [{"n": 2}, {"n": 1}]
    places = [child_job_id(ended.id, 1, i) for i in (1, 2)]
    assert [r for r in reads if r != ended.id][:3] == [places[0], places[0], places[1]]


def test_an_unanswered_spawn_that_landed_is_sent_by_the_reconciler_when_the_handler_moves_on(
        store, queue, clock, monkeypatch):
    from chalicelib.domain.job import isoformat
    from chalicelib.lifecycle.reconcile import ReconcileOutcome

    ended, children, _, sent = _spawned_after_an_unanswered_spawn(
        store, queue, clock, monkeypatch, lands=True, again=[], retry=False)
    assert [c.payload for c in children] == [{"n": 1}] and sent == []
    lifecycle = JobLifecycle(store, queue, JobTypeRegistry(), clock=clock)
    clock.advance(lifecycle.dispatch_grace_s)
    (due,) = store.due(isoformat(clock.now), 10).jobs
    assert due.id == children[0].id
    assert lifecycle.reconcile(store.get(due.id, mark_gone=False)) == ReconcileOutcome.REDISPATCHED
    assert [m.job_id for m in queue.drain()] == [children[0].id]
