"""The registries the built-in job types register into when their module is imported: the
product's types, and the `demo.*` types a deployment runs only with DemoJobTypes on."""
from chalicelib.domain.registry import JobTypeRegistry

registry = JobTypeRegistry()
demo_registry = JobTypeRegistry()
