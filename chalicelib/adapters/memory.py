"""In-memory adapters of the job's own ports, with the same contract as the AWS ones (conditional
writes included), a module per port as their AWS twins: the job store (memory_jobs.py), the job
queues and their operations (memory_queues.py), finished jobs' clean-up (memory_retention.py),
each imported from here. The other ports' twins: memory_blobs.py, memory_events.py,
memory_stats.py, memory_stream.py."""
from __future__ import annotations

from chalicelib.adapters.memory_jobs import InMemoryJobStore
from chalicelib.adapters.memory_queues import (
    InMemoryDeadLetterQueue,
    InMemoryJobQueue,
    InMemoryQueueOperations,
    ParkedMessage,
)
from chalicelib.adapters.memory_retention import InMemoryFinishedJobs

__all__ = [
    "InMemoryDeadLetterQueue",
    "InMemoryFinishedJobs",
    "InMemoryJobQueue",
    "InMemoryJobStore",
    "InMemoryQueueOperations",
    "ParkedMessage",
]
