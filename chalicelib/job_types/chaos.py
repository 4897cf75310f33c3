"""`demo.chaos`: a job type that breaks on purpose, for the reliability suites.

Its payload says at which step of which attempts the worker process dies (`os._exit`, as an
out-of-memory kill or a segfault would) or the handler hangs past its timeout (sleeping, or
swallowing every interrupt until the worker ends its process). A finished
run leaves one side effect: an artifact named `side-effect-<attempt>-<random>` (a new name per
run, so a second run of the same attempt shows as a second artifact) and a `chaos side effect`
log line. The suites count the artifacts to prove no job's work completed twice."""
from __future__ import annotations

import os
import time
import uuid
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.job_types.catalog import demo_registry
from chalicelib.observability import logger

CHAOS_TIMEOUT_S = 3
SIDE_EFFECT_MESSAGE = "chaos side effect"
SIDE_EFFECT_ARTIFACT_PREFIX = "side-effect-"


class ChaosPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"steps": 5, "step_ms": 100}]})

    steps: int = Field(default=5, ge=1, le=100, description="steps; progress is reported after each")
    step_ms: int = Field(default=100, ge=0, le=500, description="milliseconds each step takes")
    crash_at_step: Optional[int] = Field(default=None, ge=1, description="the worker process exits here")
    crash_attempts: list[int] = Field(default=[1], max_length=5, description="attempts that crash")
    hang_at_step: Optional[int] = Field(default=None, ge=1, description="the handler sleeps past its timeout here")
    hang_attempts: list[int] = Field(default=[1], max_length=5, description="attempts that hang")
    hang_swallows: bool = Field(default=False, description=(
        "the hang catches every interrupt (`except Exception` in a loop) instead of sleeping once: "
        "the worker then ends its process"))

    @model_validator(mode="after")
    def _within_steps(self) -> "ChaosPayload":
        for name in ("crash_at_step", "hang_at_step"):
            value = getattr(self, name)
            if value is not None and value > self.steps:
                raise ValueError(f"{name} ({value}) must not exceed steps ({self.steps})")
        if self.steps * self.step_ms > (CHAOS_TIMEOUT_S - 1) * 1000:
            raise ValueError(f"steps x step_ms must leave a second of the {CHAOS_TIMEOUT_S} s timeout")
        return self


def _swallow_interrupts(seconds: float) -> None:
    """A retry loop that catches everything, the timeout included, for `seconds`."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            time.sleep(0.05)
        except Exception:  # noqa: BLE001 - the point: a handler that will not stop
            pass


@demo_registry.register(
    "demo.chaos",
    ChaosPayload,
    max_attempts=3,
    timeout_s=CHAOS_TIMEOUT_S,
    priority="normal",
    description="Steps like demo.steps, but the worker process dies or hangs where the payload says.",
)
def run_chaos(ctx, payload: ChaosPayload) -> dict:
    for step in range(1, payload.steps + 1):
        if payload.step_ms:
            time.sleep(payload.step_ms / 1000)
        if payload.crash_at_step == step and ctx.attempt in payload.crash_attempts:
            logger.warning("chaos: worker process exits", extra={"job_id": ctx.job_id, "attempt": ctx.attempt})
            os._exit(17)  # no cleanup, no outcome written: the lease must bring the job back
        if payload.hang_at_step == step and ctx.attempt in payload.hang_attempts:
            if payload.hang_swallows:
                _swallow_interrupts(CHAOS_TIMEOUT_S * 20)
            else:
                time.sleep(CHAOS_TIMEOUT_S * 3)  # the runner's timeout interrupts this
        ctx.progress(100 * step / payload.steps, step=f"step {step}/{payload.steps}")
    # Through the job's context: an attempt past its timeout can no longer write it.
    ctx.artifact(f"{SIDE_EFFECT_ARTIFACT_PREFIX}{ctx.attempt}-{uuid.uuid4().hex[:8]}", f"attempt {ctx.attempt}\n")
    logger.info(SIDE_EFFECT_MESSAGE, extra={"job_id": ctx.job_id, "attempt": ctx.attempt})
    return {"steps": payload.steps, "attempt": ctx.attempt}
