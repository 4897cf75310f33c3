"""The job types this deployment runs. Importing this package registers them all."""
from chalicelib.domain.registry import JobTypeRegistry

registry = JobTypeRegistry()

from chalicelib.job_types import chaos, demo, maintenance  # noqa: E402,F401  (register on import)

__all__ = ["registry"]
