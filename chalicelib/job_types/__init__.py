"""The job types a deployment can run. Importing this package registers them: the product's
types in `registry`, the `demo.*` types in `demo_registry` (both in job_types/catalog.py).
The composition root builds what one deployment runs with `build_registry`, demo types only
where the stack parameter DemoJobTypes is true (demos, benchmarks, tests), since one of them
kills its worker process on purpose and another writes 50 MB artifacts, and adds the
maintenance types (job_types/maintenance.py) running its own tasks."""
from chalicelib.job_types import chaos, demo  # noqa: F401  (register on import)
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.job_types.catalog import demo_registry, registry


def build_registry(*, demo_types: bool) -> JobTypeRegistry:
    """The types one deployment runs: `registry`, plus `demo_registry` when `demo_types`."""
    return registry.merged(demo_registry) if demo_types else registry


__all__ = ["build_registry", "demo_registry", "registry"]
