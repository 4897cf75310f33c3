"""The registry the built-in job types register into when their module is imported."""
from chalicelib.domain.registry import JobTypeRegistry

registry = JobTypeRegistry()
