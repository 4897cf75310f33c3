"""Job types: registered in code with a pydantic payload model and their run policy."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import pydantic
import typing_extensions
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from chalicelib.defaults import (
    DEFAULT_JOB_ATTEMPTS,
    DEFAULT_JOB_TIMEOUT_S,
    MAX_JOB_ATTEMPTS,
    MAX_JOB_TIMEOUT_S,
    MAX_JOB_TYPE_CHARS,
    WORKER_TIMEOUT_S,
)
from chalicelib.domain.errors import InvalidPayloadError, UnknownJobTypeError, describe, validation_problems
from chalicelib.domain.text import NOT_UNICODE, holds_lone_surrogate

Handler = Callable[[Any, Any], Any]  # (ctx, payload model) -> JSON-serialisable result
# Type names become parts of storage keys and metric dimensions: dotted lower-case words.
TYPE_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
# The built-in maintenance task types (job_types/maintenance.py), which every deployment adds
# beside the product's types, are named under this prefix: another type there would clash.
MAINTENANCE_PREFIX = "maintenance."
# A payload is stored on the job and shown by GET /jobs/{id}: a secret has no place in it (and
# stored as pydantic dumps it, '**********', its handler would get the mask).
SECRET_TYPES = tuple(t for t in (pydantic.SecretStr, pydantic.SecretBytes, getattr(pydantic, "Secret", None)) if t)
# Field types whose validation depends on when it runs: true at submit, false by the time a
# delayed, queued or retried job's worker validates the stored payload again.
MOMENT_TYPES = (pydantic.FutureDate, pydantic.FutureDatetime)


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    max_attempts: int = 3
    timeout_s: int = 60
    priority: str = "normal"
    description: str = ""
    internal: bool = False  # built-in (maintenance) types: not listed, not submittable on /jobs

    def parse_payload(self, payload: Any, *, stored: bool = False) -> BaseModel:
        """Validate a payload; raises InvalidPayloadError with pydantic's errors in `details`,
        or for a payload holding a lone surrogate (a child's: POST /jobs refuses its body).
        `stored`: the payload as `dump_payload` stored it (the worker's), whose fields are named
        by their alias, else by their name: one with only a `validation_alias` (camelCase input)
        is stored under its name, which is taken then too."""
        if holds_lone_surrogate(payload):
            raise InvalidPayloadError(f"payload {NOT_UNICODE}",
                                      details=[{"loc": [], "msg": f"text {NOT_UNICODE}", "type": "not_unicode"}])
        try:
            return self.payload_model.model_validate(payload, by_name=True if stored else None)
        except ValidationError as exc:
            message, details = validation_problems(exc, f"payload is not valid for job type {self.name!r}")
            raise InvalidPayloadError(message, details=details) from exc
        except Exception as exc:
            # pydantic turns only a validator's ValueError and AssertionError into a ValidationError;
            # any other (`value.strip()` on a number) is still the payload's fault, not a server error.
            raise InvalidPayloadError(
                f"payload is not valid for job type {self.name!r}",
                details=[{"loc": [], "msg": f"a validator raised {describe(exc)}", "type": "validator_error"}],
            ) from exc

    def dump_payload(self, model: BaseModel) -> Any:
        """The payload as stored on the job: JSON, by alias, so that `payload_model` validates
        it again in the worker (a field with `Field(alias="from")` is stored as `from`). Without
        its computed fields (`@computed_field`): no input of the model, they are worked out again
        there, and a model with `extra="forbid"` would refuse them."""
        return model.model_dump(mode="json", by_alias=True, exclude_computed_fields=True)

    def asked_payload(self, stored: Any) -> Any:
        """What a payload `stored` (stored_payload's) asks for: its fields at their default left
        out, as a request that leaves them to their default gives it. Equal for payloads the
        type reads as one (a default spelled out or not, 1 or 1.0 for a float), and unchanged by
        a field a later model adds with a default."""
        return self.parse_payload(stored, stored=True).model_dump(
            mode="json", by_alias=True, exclude_computed_fields=True, exclude_defaults=True)

    def stored_payload(self, model: BaseModel) -> Any:
        """`dump_payload(model)`, checked to be JSON and what the worker reads back as `model`: parsed as
        the worker parses it (`stored`), it dumps to itself again. Register refuses the models
        whose dump cannot read back (a serializer of their own...); this holds for any other (a
        type with a pydantic schema of its own). Raises InvalidPayloadError (`details`:
        `not_stored_as_given`) instead of a job that would fail `invalid_payload` in the worker,
        or whose handler would get another payload than the one submitted."""
        stored = self.dump_payload(model)
        loc = _non_finite_at(stored)
        if loc is not None:  # a float field takes them from Python (ctx.spawn); no JSON carries them
            raise InvalidPayloadError(
                f"payload is not valid for job type {self.name!r}: it holds NaN or Infinity, which JSON has no "
                "form for (stored, it would read back as null)",
                details=[{"loc": loc, "msg": "NaN or Infinity is not a JSON number", "type": "not_json"}])
        try:
            again = self.dump_payload(self.parse_payload(stored, stored=True))
        except InvalidPayloadError as exc:
            problems = [{"loc": d["loc"], "msg": f"as stored: {d['msg']}", "type": "not_stored_as_given"}
                        for d in exc.details or ()]
            raise self._not_stored(problems or [{"loc": [], "msg": exc.message, "type": "not_stored_as_given"}]) \
                from exc
        if not _same_json(again, stored):
            raise self._not_stored([{"loc": [], "type": "not_stored_as_given",
                                     "msg": "as stored, it validates to another payload than the one submitted"}])
        return stored

    def _not_stored(self, details: list[dict[str, Any]]) -> InvalidPayloadError:
        return InvalidPayloadError(
            f"payload is valid for job type {self.name!r}, but its payload model does not read back the payload "
            "it stores (a serializer of its own writes what its validation does not take as given): no job of "
            "it could run as submitted, so none is made; the type's model needs fixing", details=details)


class JobTypeRegistry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(
        self,
        name: str,
        payload_model: type[BaseModel],
        *,
        max_attempts: int = DEFAULT_JOB_ATTEMPTS,
        timeout_s: int = DEFAULT_JOB_TIMEOUT_S,
        priority: str = "normal",
        description: str = "",
        internal: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("demo.steps", StepsPayload, max_attempts=3)`. Raises
        ValueError or TypeError for a type that breaks a rule (docs/jobs.md), among them a name
        under MAINTENANCE_PREFIX unless `internal` (the built-in maintenance types are)."""
        _check_name(name, internal)
        _check_policy(name, priority, max_attempts, timeout_s)
        _check_description(name, description)
        _check_payload_model(name, payload_model)
        _check_fits_a_worker(name, timeout_s)

        def decorator(handler: Handler) -> Handler:
            _check_handler(name, handler)
            if name in self._types:
                raise ValueError(f"job type {name!r} is already registered")
            self._types[name] = JobType(
                name, payload_model, handler, max_attempts, timeout_s, priority, description, internal
            )
            return handler

        return decorator

    def merged(self, other: "JobTypeRegistry") -> "JobTypeRegistry":
        """A new registry with the types of both; raises ValueError if a name is in both."""
        clash = set(self._types) & set(other._types)
        if clash:
            raise ValueError(f"job types registered twice: {sorted(clash)}")
        combined = JobTypeRegistry()
        combined._types = {**self._types, **other._types}
        return combined

    def copy(self) -> JobTypeRegistry:
        """A registry with the same types; what is registered in either stays out of the other."""
        copied = JobTypeRegistry()
        copied._types = dict(self._types)
        return copied

    def get(self, name: str) -> JobType:
        """Raises UnknownJobTypeError listing the known types."""
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(self.names(public=True)) or "none"
            raise UnknownJobTypeError(
                f"unknown job type {name!r}; known types: {known}"
            ) from None

    def find(self, name: str) -> Optional[JobType]:
        return self._types.get(name)

    def names(self, *, public: bool = False) -> list[str]:
        """Registered type names; `public=True` leaves out the internal ones."""
        return sorted(n for n, t in self._types.items() if not (public and t.internal))

    def get_public(self, name: str) -> JobType:
        """As get(), but an internal type is as unknown as a missing one."""
        job_type = self.get(name)
        if job_type.internal:
            raise UnknownJobTypeError(
                f"unknown job type {name!r}; known types: {', '.join(self.names(public=True)) or 'none'}"
            )
        return job_type


def _check_name(name: str, internal: bool) -> None:
    """Raises ValueError for a name that is not dotted lower-case words, or that is under
    MAINTENANCE_PREFIX for a type that is not `internal`."""
    if not TYPE_NAME.fullmatch(name):
        raise ValueError(f"job type names are dotted lower-case words (a-z, 0-9, _), not {name!r:.200}")
    if len(name) > MAX_JOB_TYPE_CHARS:
        raise ValueError(f"job type names are at most {MAX_JOB_TYPE_CHARS} characters, "
                         f"not {len(name)} ({name[:40]!r}...)")
    if name.startswith(MAINTENANCE_PREFIX) and not internal:
        raise ValueError(
            f"job type names starting {MAINTENANCE_PREFIX!r} are reserved for the built-in maintenance "
            f"task types, which every deployment registers beside its own: name {name!r} under another prefix"
        )


def _check_policy(name: str, priority: str, max_attempts: int, timeout_s: int) -> None:
    """Raises ValueError for an unknown priority or a count below 1, TypeError for a count that
    is not an int."""
    if priority not in ("high", "normal", "low"):
        raise ValueError(f"priority must be high, normal or low, not {priority!r}")
    for field, value in (("max_attempts", max_attempts), ("timeout_s", timeout_s)):
        # Kept on the job's record as integers: a fraction would fail every submission of the type.
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{field} of {name!r} must be a whole number (an int), not {value!r}")
    if max_attempts < 1 or timeout_s < 1:
        raise ValueError("max_attempts and timeout_s must be at least 1")
    if max_attempts > MAX_JOB_ATTEMPTS:
        raise ValueError(f"max_attempts of {name!r} is at most {MAX_JOB_ATTEMPTS}, not {max_attempts:,}: past that "
                         "the retries span more than 17 hours, an outage to look into rather than retry")


def _check_description(name: str, description: Any) -> None:
    """Raises TypeError for a description that is not text: GET /job-types answers it as JSON (a
    lazily translated string, an object, would make that listing fail for every type)."""
    if not isinstance(description, str):
        raise TypeError(f"the description of {name!r} must be text (a str), not {type(description).__name__}")


def _check_payload_model(name: str, payload_model: Any) -> None:
    """Raises TypeError for a payload model that is no pydantic model or has no JSON schema,
    ValueError for one with a field its dump leaves out, a serializer of its own or a secret
    field."""
    if not (isinstance(payload_model, type) and issubclass(payload_model, BaseModel)):
        raise TypeError(f"the payload model of {name!r} must be a pydantic BaseModel subclass, "
                        f"not {payload_model!r}")
    try:
        # GET /job-types lists each type with this schema: one no schema can describe (a field of
        # an arbitrary class, a Callable) would make that listing, and the dashboard's form, fail.
        payload_model.model_json_schema()
    except pydantic.PydanticInvalidForJsonSchema as exc:
        raise TypeError(f"the payload model of {name!r} has no JSON schema ({str(exc).splitlines()[0]:.200}): "
                        "a payload is JSON, and GET /job-types lists its schema; use fields of JSON types "
                        "(and pydantic models of them)") from None
    unstored = _unstored_field(payload_model)
    if unstored is not None:
        raise ValueError(
            f"the payload model of {name!r} has a field its dump loses ({unstored}): a payload "
            "is stored as the model dumps it and validated again by the worker, so the handler would never get "
            "that field's value; drop exclude=True, and give a field one `alias` rather than a serialization_alias"
        )
    serialized = _own_serializer(payload_model)
    if serialized is not None:
        raise ValueError(
            f"the payload model of {name!r} has a serializer of its own ({serialized}): a payload is stored as "
            "the model dumps it and validated again by the worker, and what such a serializer writes need not "
            "validate back (every job of the type would fail invalid_payload once accepted) nor mean what was "
            "submitted; drop it and format the value in the handler"
        )
    moment = _field_of_types(payload_model, MOMENT_TYPES)
    if moment is not None:
        raise ValueError(
            f"the payload model of {name!r} has a field that must lie in the future ({moment}): a payload is "
            "validated again by the worker when the job runs, after its delay, its wait in the queue or its "
            "retries, by when that time may have passed (the job would fail invalid_payload after its 202); "
            "take a plain date or datetime and compare it with the time in the handler"
        )
    secret = _field_of_types(payload_model, SECRET_TYPES)
    if secret is not None:
        raise ValueError(
            f"the payload model of {name!r} has a secret field ({secret}): a payload is stored on the job "
            "and shown by GET /jobs/{id}; pass a reference to the secret (its name in Secrets Manager "
            "or Parameter Store) and read the secret in the handler"
        )


def _check_fits_a_worker(name: str, timeout_s: int) -> None:
    """Raises ValueError for an attempt's timeout longer than one worker invocation allows."""
    if timeout_s > MAX_JOB_TIMEOUT_S:
        raise ValueError(
            f"timeout_s of {name!r} is {timeout_s} s; an attempt runs inside one worker invocation "
            f"({WORKER_TIMEOUT_S} s, less {WORKER_TIMEOUT_S - MAX_JOB_TIMEOUT_S} s for its start and the outcome), "
            f"so at most {MAX_JOB_TIMEOUT_S} s: split longer work into child jobs"
        )


def _check_handler(name: str, handler: Any) -> None:
    """Raises TypeError for a handler the worker cannot call for a result: not callable, or one
    whose call returns a coroutine or generator that never runs."""
    if not callable(handler):
        raise TypeError(f"the handler of {name!r} must be callable (ctx, payload), not {handler!r:.100}")
    # A callable object (a class with `__call__`) is called through that method.
    call = handler if inspect.isroutine(handler) or isinstance(handler, functools.partial) else \
        getattr(handler, "__call__", handler)
    if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler) or \
            inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        # Called, it would return a coroutine that never runs, taken for the job's result.
        raise TypeError(
            f"the handler of {name!r} is a coroutine function; the worker calls handlers as plain "
            "functions: register a function that runs it, "
            "`lambda ctx, payload: asyncio.run(handler(ctx, payload))`"
        )
    if inspect.isgeneratorfunction(handler) or inspect.isgeneratorfunction(call):
        # Called, it would return a generator whose body never runs, taken for the job's result.
        raise TypeError(
            f"the handler of {name!r} is a generator function (it yields); the worker calls it "
            "and takes what it returns as the job's result, so its body would never run: "
            "return the result instead (the items in a list)"
        )


def _fields(model: Any, path: str = "",
            seen: Optional[set[Any]] = None) -> Iterator[tuple[str, FieldInfo, list[Any]]]:
    """(dotted path, field, every type its annotation names: itself and its arguments, through
    lists, Optionals, dicts...) of each field of `model` and of every model, dataclass or
    TypedDict it holds, each once."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    for name, field in (_field_infos(model) or {}).items():
        annotations, pending = [], [field.annotation]
        while pending:
            annotation = pending.pop()
            annotations.append(annotation)
            pending.extend(a for a in typing.get_args(annotation) if not isinstance(a, (str, int, float)))
        yield f"{path}{name}", field, annotations
        for annotation in annotations:
            if _field_infos(annotation) is not None:
                yield from _fields(annotation, f"{path}{name}.", seen)


def _field_infos(kind: Any) -> Optional[dict[str, FieldInfo]]:
    """The fields of a type pydantic validates and dumps field by field (a model, a dataclass,
    a TypedDict) as pydantic describes them (alias, exclude, metadata), else None."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return kind.model_fields
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        fields = getattr(kind, "__pydantic_fields__", None)  # a pydantic dataclass's, built already
        if fields is not None:
            return fields
        hints = _type_hints(kind)
        return {f.name: FieldInfo.from_annotation(hints.get(f.name, f.type)) if f.default is dataclasses.MISSING
                else FieldInfo.from_annotated_attribute(hints.get(f.name, f.type), f.default)
                for f in dataclasses.fields(kind)}
    if typing_extensions.is_typeddict(kind):
        return {name: FieldInfo.from_annotation(hint) for name, hint in _type_hints(kind).items()}
    return None


def _type_hints(kind: type) -> dict[str, Any]:
    """`kind`'s annotations, `Annotated` metadata kept; those that do not resolve left out (the
    model's own schema, built at its definition, has refused an unresolvable one already)."""
    try:
        return typing.get_type_hints(kind, include_extras=True)
    except Exception:  # noqa: BLE001 - a forward reference this module cannot resolve
        return {}


def _unstored_field(model: type[BaseModel]) -> Optional[str]:
    """The dotted path, and why, of the first field of `model` or of a model, dataclass or
    TypedDict it holds (in a list, an Optional, a dict...) that its dump leaves out
    (`exclude=True`) or writes under a name its validation does not take (a
    `serialization_alias` of its own), else None."""
    for path, field, _ in _fields(model):
        if field.exclude is True:
            return f"{path}: exclude=True"
        name = path.rsplit(".", 1)[-1]
        if field.serialization_alias is not None and field.serialization_alias not in _names_taken(name, field):
            return f"{path}: stored as {field.serialization_alias!r}, its serialization_alias, which it does not take"
    return None


def _own_serializer(model: type[BaseModel]) -> Optional[str]:
    """Where, and what, the first serializer of the model's own is that writes its dump, in
    `model` or a model, dataclass or TypedDict it holds (in a list, an Optional, a dict...): a
    `@model_serializer`, a `@field_serializer`, a `PlainSerializer`/`WrapSerializer` annotation
    (on a field or inside its type, `list[Annotated[int, PlainSerializer(str)]]`),
    `json_encoders`; else None."""
    found = _model_serializer(model, "")
    if found is not None:
        return found
    for path, field, annotations in _fields(model):
        for item in [*field.metadata, *annotations]:
            if isinstance(item, (pydantic.PlainSerializer, pydantic.WrapSerializer)):
                return f"{path}: {type(item).__name__}"
            if _field_infos(item) is not None:
                found = _model_serializer(item, f"{path}.")
                if found is not None:
                    return found
    return None


def _model_serializer(model: Any, path: str) -> Optional[str]:
    """The serializer `model` (a model or a dataclass) itself declares
    (`@model_serializer`, `@field_serializer`, `json_encoders`), named under `path` (the dotted
    path of the field holding it), else None."""
    where = path.rstrip(".") or "the model"
    decorators = getattr(model, "__pydantic_decorators__", None)
    if decorators is not None:
        for serializer in decorators.model_serializers:
            return f"{where}: @model_serializer {serializer!r}"
        for serializer, decorator in decorators.field_serializers.items():
            return f"{path}{decorator.info.fields[0]}: @field_serializer {serializer!r}"
    else:  # a plain dataclass: pydantic finds its decorators on the class when it builds a schema
        for serializer, member in vars(model).items():
            info = getattr(member, "decorator_info", None)
            if getattr(info, "decorator_repr", None) == "@model_serializer":
                return f"{where}: @model_serializer {serializer!r}"
            if getattr(info, "decorator_repr", None) == "@field_serializer":
                return f"{path}{info.fields[0]}: @field_serializer {serializer!r}"
    config = getattr(model, "model_config", None) or getattr(model, "__pydantic_config__", None) or {}
    if config.get("json_encoders"):
        return f"{where}: json_encoders"
    return None


def _names_taken(name: str, field: Any) -> set[str]:
    """The keys a stored payload may hold a field's value under: its name (the worker takes it,
    parse_payload's `stored`), its validation alias, or one of its AliasChoices."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, pydantic.AliasChoices) else [alias]
    return {name} | {choice for choice in choices if isinstance(choice, str)}


def _same_json(one: Any, other: Any) -> bool:
    """Whether two JSON values are the same payload."""
    try:
        return json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)
    except (TypeError, ValueError):  # keys of several types: compared as they are
        return bool(one == other)


def _non_finite_at(value: Any, loc: Optional[list[Any]] = None) -> Optional[list[Any]]:
    """Where (a pydantic-style `loc`) the first NaN or Infinity in a JSON value is, else None."""
    loc = [] if loc is None else loc
    if isinstance(value, float) and not math.isfinite(value):
        return loc
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite_at(item, [*loc, key])
        if found is not None:
            return found
    return None


def _field_of_types(model: type[BaseModel], kinds: tuple[type, ...]) -> Optional[str]:
    """The dotted path of the first field of `model`, or of a model, dataclass or TypedDict it
    holds (in a list, an Optional, a dict...), whose type is one of `kinds`, else None."""
    for path, _, annotations in _fields(model):
        for annotation in annotations:
            origin = typing.get_origin(annotation)
            if any(isinstance(t, type) and issubclass(t, kinds) for t in (origin, annotation)):
                return path
    return None
