"""The job types this deployment runs. Importing this package registers them all."""
from chalicelib.domain.registry import JobTypeRegistry

registry = JobTypeRegistry()

from chalicelib.job_types import demo, maintenance  # noqa: E402,F401  (registers on import)

__all__ = ["registry"]
