"""Job types for demos and load tests."""
from __future__ import annotations

import time
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.domain.errors import FatalJobError, RetryableJobError
from chalicelib.job_types.catalog import demo_registry
from chalicelib.worker.helpers import complete_job, fail_job, progress, start_job


class StepsPayload(BaseModel):
    # The example is what the dashboard's submit form starts from.
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"steps": 10, "step_ms": 500}]})

    steps: int = Field(ge=1, le=10_000, description="number of steps; progress is reported after each")
    step_ms: int = Field(ge=0, le=60_000, description="milliseconds each step takes")
    fail_at: Optional[int] = Field(default=None, ge=1, description="step at which every attempt fails")
    fail_mode: Literal["retry", "fatal"] = "retry"
    message_chars: int = Field(default=0, ge=0, le=300_000,
                               description="pad each step's progress message to this many characters (large events)")

    @model_validator(mode="after")
    def _fail_within_steps(self) -> "StepsPayload":
        if self.fail_at is not None and self.fail_at > self.steps:
            raise ValueError(f"fail_at ({self.fail_at}) must not exceed steps ({self.steps})")
        return self


@demo_registry.register(
    "demo.steps",
    StepsPayload,
    max_attempts=3,
    timeout_s=600,
    priority="normal",
    description="Runs `steps` steps of `step_ms` each, reporting progress after every step.",
)
def run_steps(ctx, payload: StepsPayload) -> dict:
    for step in range(1, payload.steps + 1):
        ctx.check_cancelled()
        if payload.step_ms:
            time.sleep(payload.step_ms / 1000)
        if payload.fail_at == step:
            message = f"failing at step {step} of {payload.steps} as asked"
            if payload.fail_mode == "fatal":
                raise FatalJobError(message, code="demo_failure")
            raise RetryableJobError(message, code="demo_failure")
        message = f"finished step {step} of {payload.steps}"
        ctx.progress(100 * step / payload.steps, step=f"step {step}/{payload.steps}",
                     message=message.ljust(payload.message_chars, "."))
    return {"steps": payload.steps, "attempt": ctx.attempt}


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    seconds: float = Field(ge=0, le=60)


@demo_registry.register(
    "demo.sleep",
    SleepPayload,
    max_attempts=2,
    timeout_s=3,
    priority="normal",
    description="Sleeps without reporting progress; past 3 s it hits its timeout.",
)
def run_sleep(ctx, payload: SleepPayload) -> dict:
    time.sleep(payload.seconds)
    return {"slept_s": payload.seconds}


class FanoutPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    children: int = Field(ge=1, le=50, description="number of demo.steps children to spawn")
    steps: int = Field(default=3, ge=1, le=1000)
    step_ms: int = Field(default=100, ge=0, le=60_000)
    fail_child: Optional[int] = Field(default=None, ge=1,
                                      description="this child (1 is the first spawned) fails (fatally)")

    @model_validator(mode="after")
    def _fail_within_children(self) -> "FanoutPayload":
        if self.fail_child is not None and self.fail_child > self.children:
            raise ValueError(f"fail_child ({self.fail_child}) must not exceed children ({self.children})")
        return self


@demo_registry.register(
    "demo.fanout",
    FanoutPayload,
    max_attempts=1,
    timeout_s=60,
    priority="normal",
    description="Spawns `children` demo.steps jobs and completes; its tree status follows them.",
)
def run_fanout(ctx, payload: FanoutPayload) -> dict:
    spawned = []
    for index in range(1, payload.children + 1):
        child = {"steps": payload.steps, "step_ms": payload.step_ms}
        if payload.fail_child == index:
            child.update(fail_at=1, fail_mode="fatal")
        spawned.append(ctx.spawn("demo.steps", child))
        ctx.progress(100 * index / payload.children, step=f"spawned {index}/{payload.children}")
    return {"children": spawned}


class OutputsPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    artifact_bytes: int = Field(default=0, ge=0, le=50 * 1024 * 1024, description="size of the binary artifact")
    result_bytes: int = Field(default=0, ge=0, le=5 * 1024 * 1024, description="size of the result's text")
    pad: str = Field(default="", description="ignored; makes a payload as large as needed")


@demo_registry.register(
    "demo.outputs",
    OutputsPayload,
    max_attempts=2,
    timeout_s=120,
    priority="normal",
    description="Writes a small text artifact, a JSON artifact and a binary one of `artifact_bytes`; "
    "returns a result with `result_bytes` of text.",
)
def write_outputs(ctx, payload: OutputsPayload) -> dict:
    ctx.artifact("summary.txt", f"job {ctx.job_id} attempt {ctx.attempt}\n")
    ctx.artifact("numbers.json", {"payload_pad_bytes": len(payload.pad)})
    if payload.artifact_bytes:
        block = bytes(range(256))
        data = (block * (payload.artifact_bytes // 256 + 1))[: payload.artifact_bytes]
        ctx.artifact("data.bin", data, "application/octet-stream")
    return {"text": "r" * payload.result_bytes, "pad_bytes": len(payload.pad)}


class ModelPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"step_ms": 200}]})

    step_ms: int = Field(default=200, ge=0, le=60_000, description="milliseconds each processing step takes")
    fail_at: Optional[int] = Field(
        default=None, ge=20, le=80, multiple_of=10,
        description="the processing step (20-80, a multiple of 10) at which the model fails (MODEL_ERROR)",
    )


@demo_registry.register(
    "demo.model",
    ModelPayload,
    max_attempts=2,
    timeout_s=120,
    priority="normal",
    description="The worker helpers' usage example: start_job, progress 10-80 %, complete_job "
    "(or fail_job MODEL_ERROR at `fail_at`).",
)
def process_model(ctx, payload: ModelPayload) -> None:
    # Written as the progress conventions' usage example reads (helpers, no return value).
    try:
        # Start job
        start_job(ctx, "Initializing model processing")

        # Report progress throughout
        progress(ctx, 10, "setup", "Setting up environment")

        # Process model...
        for i in range(20, 90, 10):
            progress(ctx, i, "processing", f"Processing step {i}%")
            # Do work...
            time.sleep(payload.step_ms / 1000)
            if payload.fail_at == i:
                raise RuntimeError(f"model processing failed at step {i}% as asked")

        # Complete job
        output = {"model": "output.stl", "size": 1024}
        complete_job(ctx, output, "Model processing complete")

    except Exception as e:
        fail_job(ctx, "MODEL_ERROR", str(e))
        raise
