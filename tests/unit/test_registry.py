import pytest
from pydantic import BaseModel

from chalicelib.domain.errors import InvalidPayloadError, UnknownJobTypeError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.job_types import build_registry

registry = build_registry(demo_types=True)


def test_demo_steps_is_registered_with_its_policy():
    steps = registry.get("demo.steps")
    assert steps.max_attempts == 3
    assert steps.priority == "normal"
    assert steps.parse_payload({"steps": 2, "step_ms": 5}).steps == 2


def test_unknown_type_names_the_known_ones():
    with pytest.raises(UnknownJobTypeError) as info:
        registry.get("nope")
    assert "demo.steps" in info.value.message


def test_invalid_payload_carries_pydantic_errors():
    with pytest.raises(InvalidPayloadError) as info:
        registry.get("demo.steps").parse_payload({"steps": 0, "step_ms": "x", "extra": 1})
    locs = sorted(tuple(d["loc"]) for d in info.value.details)
    assert locs == [("extra",), ("step_ms",), ("steps",)]


def test_fail_at_beyond_steps_is_refused():
    with pytest.raises(InvalidPayloadError):
        registry.get("demo.steps").parse_payload({"steps": 2, "step_ms": 0, "fail_at": 3})


def test_a_fanout_child_to_fail_beyond_its_children_is_refused():
    fanout = registry.get("demo.fanout")
    assert fanout.parse_payload({"children": 3, "fail_child": 3}).fail_child == 3
    with pytest.raises(InvalidPayloadError) as info:  # no child 5 of 3: nothing would fail, as asked
        fanout.parse_payload({"children": 3, "fail_child": 5})
    assert "fail_child (5) must not exceed children (3)" in info.value.details[0]["msg"]


def test_registering_twice_or_with_bad_policy_is_an_error():
    local = JobTypeRegistry()

    class P(BaseModel):
        pass

    local.register("x", P)(lambda ctx, p: None)
    with pytest.raises(ValueError):
        local.register("x", P)(lambda ctx, p: None)
    with pytest.raises(ValueError):
        local.register("y", P, priority="urgent")
    with pytest.raises(ValueError):
        local.register("z", P, max_attempts=0)


def test_an_attempt_count_and_a_timeout_are_each_at_least_one():
    """A type's `timeout_s` of 0 (or below) would time out every attempt as it starts, as
    `max_attempts` of 0 would run none: each is refused alone, naming the rule, and 1 is taken."""
    local = JobTypeRegistry()

    class P(BaseModel):
        pass

    for policy in ({"timeout_s": 0}, {"timeout_s": -5}, {"max_attempts": 0}, {"max_attempts": -1}):
        with pytest.raises(ValueError, match="max_attempts and timeout_s must be at least 1"):
            local.register("x.bad", P, **policy)
    local.register("x.least", P, max_attempts=1, timeout_s=1)(lambda ctx, p: None)
    assert (local.get("x.least").max_attempts, local.get("x.least").timeout_s) == (1, 1)


def test_max_attempts_is_at_most_a_hundred():
    """A type could register 10**40 attempts, which no submission could store (DynamoDB keeps
    38 digits), and run keys list in order to 9,999 only: 100 is taken, 101 refused saying so."""
    from chalicelib.defaults import MAX_JOB_ATTEMPTS

    local = JobTypeRegistry()

    class P(BaseModel):
        pass

    local.register("x.most", P, max_attempts=MAX_JOB_ATTEMPTS)(lambda ctx, p: None)
    for attempts in (MAX_JOB_ATTEMPTS + 1, 10**40):
        with pytest.raises(ValueError, match=rf"max_attempts of 'x\.more' is at most 100, not {attempts:,}"):
            local.register("x.more", P, max_attempts=attempts)
    assert local.get("x.most").max_attempts == 100 and "x.more" not in local.names()


def test_a_type_whose_attempt_cannot_fit_in_a_worker_invocation_is_refused():
    from chalicelib.defaults import MAX_JOB_TIMEOUT_S

    class P(BaseModel):
        pass

    local = JobTypeRegistry()
    local.register("fits", P, timeout_s=MAX_JOB_TIMEOUT_S)(lambda ctx, p: None)
    with pytest.raises(ValueError, match="less 30 s for its start and the outcome\\), so at most 870 s: split longer work into child jobs"):
        local.register("too.long", P, timeout_s=MAX_JOB_TIMEOUT_S + 1)


@pytest.mark.parametrize("name", ["a#b", "Demo.Steps", "x.", ".x", "x\n", "x y", "", "x" * 129])
def test_type_names_are_dotted_lower_case_words(name):
    class P(BaseModel):
        pass

    with pytest.raises(ValueError):
        JobTypeRegistry().register(name, P)


def test_scope_patterns_refuse_a_trailing_newline():
    from pydantic import ValidationError

    from chalicelib.api.requests import SubmitJobRequest

    SubmitJobRequest(type="demo.steps", scope="p-1")
    with pytest.raises(ValidationError):
        SubmitJobRequest(type="demo.steps", scope="p-1\n")


def test_demo_types_are_registered_only_when_asked_for():
    production = build_registry(demo_types=False)
    assert not any(name.startswith("demo.") for name in production.names())
    with pytest.raises(UnknownJobTypeError):
        production.get_public("demo.chaos")
    assert {"demo.chaos", "demo.steps", "demo.outputs"} <= set(registry.names(public=True))


def test_merging_refuses_a_name_in_both():
    class P(BaseModel):
        pass

    a, b = JobTypeRegistry(), JobTypeRegistry()
    a.register("x.y", P)(lambda ctx, p: None)
    b.register("x.y", P)(lambda ctx, p: None)
    with pytest.raises(ValueError):
        a.merged(b)


def test_settings_keep_demo_types_off_by_default():
    from chalicelib.settings import load_settings

    base = {"JOBPIPE_TABLE": "jobs", "JOBPIPE_IDEMPOTENCY_TABLE": "idem", "JOBPIPE_QUEUE_URL_HIGH": "h",
            "JOBPIPE_QUEUE_URL_NORMAL": "n", "JOBPIPE_QUEUE_URL_LOW": "l", "JOBPIPE_DLQ_URL": "d"}
    assert load_settings(base).demo_job_types is False
    assert load_settings({**base, "JOBPIPE_DEMO_JOB_TYPES": "true"}).demo_job_types is True


@pytest.mark.parametrize("policy", [{"timeout_s": 2.5}, {"max_attempts": 2.5}, {"max_attempts": "3"},
                                    {"timeout_s": None}, {"max_attempts": True}, {"timeout_s": 30.0}])
def test_a_policy_that_is_no_whole_number_is_refused_at_register(policy):
    """The job's record keeps max_attempts and timeout_s as integers: a type registered with
    `timeout_s=2.5` would make every submission of it fail on the job's own model (a 500), and
    `max_attempts="3"` met a comparison's TypeError saying nothing of the type."""
    class P(BaseModel):
        pass

    (field,) = policy
    with pytest.raises(TypeError, match=f"{field} of 'x.y' must be a whole number"):
        JobTypeRegistry().register("x.y", P, **policy)


def test_a_handler_that_is_no_plain_function_is_refused_at_register():
    """The worker calls a handler and takes what it returns as the result: an `async def`
handler returned a coroutine that never ran (the job failed result_not_serializable with its
work not done), so it is refused at import, saying how to run it."""
    class P(BaseModel):
        pass

    async def fetch_rates(ctx, payload):
        return {}

    local = JobTypeRegistry()
    with pytest.raises(TypeError, match="handler of 'rates.fetch' is a coroutine function.*asyncio.run"):
        local.register("rates.fetch", P)(fetch_rates)
    with pytest.raises(TypeError, match="handler of 'rates.none' must be callable"):
        local.register("rates.none", P)(None)
    assert local.names() == []


class Rows(BaseModel):
    pass


def test_an_async_generator_handler_is_refused_at_register():
    """Called, an `async def` that yields returns an async generator whose body never runs."""
    async def rows(ctx, payload):
        yield 1

    with pytest.raises(TypeError, match="handler of 'rows.stream' is a coroutine function"):
        JobTypeRegistry().register("rows.stream", Rows)(rows)


def test_a_type_that_breaks_several_rules_is_refused_for_the_first_of_them():
    """The name, then the policy, then the payload model, then the timeout's bound; the handler
    is checked before the name is taken."""
    local = JobTypeRegistry()
    with pytest.raises(ValueError, match="dotted lower-case words"):
        local.register("Bad Name", None, priority="urgent")
    with pytest.raises(ValueError, match="reserved for the built-in maintenance"):
        local.register("maintenance.x", None, priority="urgent")
    with pytest.raises(ValueError, match="priority must be"):
        local.register("x.y", None, priority="urgent", timeout_s=1.5)
    with pytest.raises(TypeError, match="timeout_s of 'x.y' must be a whole number"):
        local.register("x.y", None, max_attempts=0, timeout_s=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        local.register("x.y", None, max_attempts=0, timeout_s=10_000)
    with pytest.raises(TypeError, match="must be a pydantic BaseModel subclass"):
        local.register("x.y", None, timeout_s=10_000)
    with pytest.raises(ValueError, match="so at most"):
        local.register("x.y", Rows, timeout_s=10_000)
    local.register("x.y", Rows)(lambda ctx, p: None)
    with pytest.raises(TypeError, match="must be callable"):
        local.register("x.y", Rows)(None)
    assert local.names() == ["x.y"]


def test_a_payload_model_with_no_json_schema_is_refused_at_register():
    """GET /job-types lists each type's payload schema: a model with a field of an arbitrary
    class registered, then made that listing (every type's, and the dashboard's form) a 500."""
    from typing import Callable

    from pydantic import ConfigDict

    class Connection:
        pass

    class Holds(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        connection: Connection = None

    class Calls(BaseModel):
        callback: Callable = print

    local = JobTypeRegistry()
    for name, model in (("db.sync", Holds), ("db.call", Calls)):
        with pytest.raises(TypeError, match=f"the payload model of '{name}' has no JSON schema"):
            local.register(name, model)
    assert local.names() == []


def test_a_type_name_too_long_is_refused_saying_so():
    """A name of dotted lower-case words past MAX_JOB_TYPE_CHARS was refused as not being dotted
    lower-case words, which it is: the refusal names the length instead."""
    from chalicelib.defaults import MAX_JOB_TYPE_CHARS

    class P(BaseModel):
        pass

    local = JobTypeRegistry()
    local.register("x" * MAX_JOB_TYPE_CHARS, P)(lambda ctx, p: None)
    with pytest.raises(ValueError, match=f"at most {MAX_JOB_TYPE_CHARS} characters, not {MAX_JOB_TYPE_CHARS + 1}"):
        local.register("reports." + "x" * (MAX_JOB_TYPE_CHARS - 7), P)


@pytest.mark.parametrize("description", [None, 5, ["steps"]])
def test_a_description_that_is_not_text_is_refused_at_register(description):
    """GET /job-types answers each type's description as JSON: one that is no text (a lazily
    translated string, an object) made that listing fail for every type."""
    class P(BaseModel):
        pass

    local = JobTypeRegistry()
    local.register("reports.build", P, description="Builds the monthly report")(lambda ctx, p: None)
    with pytest.raises(TypeError, match="the description of 'reports.other' must be text"):
        local.register("reports.other", P, description=description)
    assert local.names() == ["reports.build"]


def test_a_callable_object_whose_call_is_async_or_a_generator_is_refused_at_register():
    """register refused an `async def` handler, whose call returns a coroutine that never runs,
    but not an object whose `__call__` is one: its jobs failed result_not_serializable, the work
    never done. An async `__call__` that yields is refused as well."""
    class P(BaseModel):
        pass

    class Fetch:
        async def __call__(self, ctx, payload):
            return {}

    class Rows:
        def __call__(self, ctx, payload):
            yield 1

    class Stream:
        async def __call__(self, ctx, payload):
            yield 1

    class Plain:
        def __call__(self, ctx, payload):
            return {}

    local = JobTypeRegistry()
    with pytest.raises(TypeError, match="handler of 'rates.fetch' is a coroutine function"):
        local.register("rates.fetch", P)(Fetch())
    with pytest.raises(TypeError, match="handler of 'rates.rows' is a generator function"):
        local.register("rates.rows", P)(Rows())
    with pytest.raises(TypeError, match="handler of 'rates.stream' is a coroutine function"):
        local.register("rates.stream", P)(Stream())
    local.register("rates.plain", P)(Plain())
    assert local.names() == ["rates.plain"]


def test_a_validator_raising_what_pydantic_does_not_catch_is_an_invalid_payload():
    """pydantic turns only a validator's ValueError and AssertionError into a ValidationError:
    one calling `value.strip()` on a number raises AttributeError, which is still the payload's
    fault. It is refused as an invalid payload naming the type and what the validator raised
    (a 400 at submit, `invalid_payload` in the worker), not a server error."""
    from pydantic import field_validator

    from chalicelib.domain.errors import describe

    class Tagged(BaseModel):
        tag: object

        @field_validator("tag", mode="before")
        @classmethod
        def _stripped(cls, value):
            return value.strip()

    local = JobTypeRegistry()
    local.register("tags.add", Tagged)(lambda ctx, p: None)
    assert local.get("tags.add").parse_payload({"tag": " a "}).tag == "a"
    with pytest.raises(InvalidPayloadError) as info:
        local.get("tags.add").parse_payload({"tag": 5})
    raised = describe(AttributeError("'int' object has no attribute 'strip'"))
    assert info.value.message == "payload is not valid for job type 'tags.add'"
    assert info.value.details == [{"loc": [], "msg": f"a validator raised {raised}", "type": "validator_error"}]


def test_a_stored_payload_asks_for_its_fields_off_their_default_as_json_by_alias():
    """A keyed submission's request is kept hashed as the job takes it (its taken hash, kept
    for the key's day and across deploys): the stored payload read as the worker reads it (a
    validation_alias field under its name), dumped as stored (JSON, by alias, no computed
    field) with its fields at their default left out. A default spelled out is the same request."""
    from datetime import date

    from pydantic import Field, computed_field

    class Shipment(BaseModel):
        from_: str = Field(alias="from")
        user_id: str = Field(validation_alias="userId")
        due: date
        count: int = 1

        @computed_field
        @property
        def label(self) -> str:
            return f"{self.from_}-{self.count}"

    local = JobTypeRegistry()
    local.register("stock.ship", Shipment)(lambda ctx, p: None)
    shipment = local.get("stock.ship")
    stored = shipment.stored_payload(shipment.parse_payload({"from": "w-7", "userId": "u-1", "due": "2027-01-31",
                                                             "count": 1}))
    assert stored == {"from": "w-7", "user_id": "u-1", "due": "2027-01-31", "count": 1}
    asked = {"from": "w-7", "user_id": "u-1", "due": "2027-01-31"}
    assert shipment.asked_payload(stored) == asked == shipment.asked_payload(asked)
    assert shipment.asked_payload({**stored, "count": 2}) == {**asked, "count": 2}


def test_a_submitted_payload_names_its_fields_as_the_model_asks_and_only_a_stored_one_by_name():
    """A client sends a field by its alias (`from`, `userId`): sent by its Python name
    (`from_`, `user_id`) it is refused as missing, not taken for the field, so a spawn asked
    again under the other spelling is not the child already made. Only the worker's read of
    the stored payload (`stored=True`) takes the name a validation_alias field is stored under."""
    from pydantic import Field

    class Shipment(BaseModel):
        from_: str = Field(alias="from")
        user_id: str = Field(validation_alias="userId")

    local = JobTypeRegistry()
    local.register("stock.move", Shipment)(lambda ctx, p: None)
    shipment = local.get("stock.move")
    for by_name in ({"from_": "w-7", "userId": "u-1"}, {"from": "w-7", "user_id": "u-1"}):
        with pytest.raises(InvalidPayloadError) as info:
            shipment.parse_payload(by_name)
        assert [d["type"] for d in info.value.details] == ["missing"]
    assert shipment.parse_payload({"from": "w-7", "user_id": "u-1"}, stored=True).user_id == "u-1"


def test_a_type_registered_without_a_policy_gets_registers_defaults():
    """A product type may leave its policy to `register`: three attempts in all, 60 s each, at
    normal priority, with no description, listed and submittable like any product type."""
    class P(BaseModel):
        pass

    local = JobTypeRegistry()
    local.register("reports.plain", P)(lambda ctx, p: None)
    plain = local.get_public("reports.plain")
    assert (plain.max_attempts, plain.timeout_s, plain.priority, plain.description, plain.internal) == (
        3, 60, "normal", "", False)
    assert local.names(public=True) == ["reports.plain"]


def test_an_unknown_type_is_refused_naming_only_the_types_a_user_may_submit():
    """The refusal of an unknown type names the known ones a user may submit: never an internal
    (maintenance) type, which is as unknown to a user as a missing one, and "none" when there is
    no other. `names()` alone lists the internal ones too, for the operators' view."""
    class P(BaseModel):
        pass

    local = JobTypeRegistry()
    local.register("maintenance.sweep", P, internal=True)(lambda ctx, p: None)
    for lookup in (local.get, local.get_public):
        with pytest.raises(UnknownJobTypeError, match=r"^unknown job type 'nope'; known types: none$"):
            lookup("nope")
    local.register("reports.build", P)(lambda ctx, p: None)
    local.register("reports.archive", P)(lambda ctx, p: None)
    for name, lookup in (("nope", local.get), ("maintenance.sweep", local.get_public)):
        with pytest.raises(UnknownJobTypeError,
                           match=rf"^unknown job type '{name}'; known types: reports.archive, reports.build$"):
            lookup(name)
    assert local.names() == ["maintenance.sweep", "reports.archive", "reports.build"]
    assert local.names(public=True) == ["reports.archive", "reports.build"]


@pytest.mark.parametrize("priority", ["high", "normal", "low"])
def test_each_priority_a_job_may_run_at_is_taken_at_register(priority):
    """A type runs at high, normal or low priority (its queue): each is taken, and kept."""
    class P(BaseModel):
        pass

    local = JobTypeRegistry()
    local.register("reports.build", P, priority=priority)(lambda ctx, p: None)
    assert local.get("reports.build").priority == priority
