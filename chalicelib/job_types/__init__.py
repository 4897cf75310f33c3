"""The job types this deployment runs. Importing this package registers the demo and chaos
types; the composition root adds the maintenance types (job_types/maintenance.py)."""
from chalicelib.job_types import chaos, demo  # noqa: F401  (register on import)
from chalicelib.job_types.catalog import registry

__all__ = ["registry"]
