"""Ports: what the core needs from the outside world. Each has an AWS adapter and an in-memory one.

A module per family of ports, each with the values its ports carry: `jobs.py` (`JobStore`),
`queues.py` (`JobQueue`, the job message), `blobs.py` (`BlobStore`, `ArtifactStore`),
`operations.py` (`FinishedJobs`, `StatsStore`, `ReconcilerLog`, `QueueOperations`), `stream.py`
(`EventPublisher`, `JobChange`, `FailedStreamBatches`, `ChangeStream`, `ParkedRecordDrops`), `subscribers.py`
(`CacheStore`, `DeliveryLedger`, `DeadLetterQueue`, `WebhookSender`), `timers.py` (`Timer`, `Clock`).
Every name is imported from here: `from chalicelib.ports import JobStore`.
"""
from __future__ import annotations

from chalicelib.ports.blobs import (
    Artifact,
    ArtifactInfo,
    ArtifactPage,
    ArtifactStore,
    BlobStore,
)
from chalicelib.ports.jobs import (
    CLAIM_CHECKED,
    REMOVE,
    ChangeSet,
    Expectation,
    ExpectedWrite,
    JobPage,
    JobQuery,
    JobStore,
    SubmissionKey,
    claim_checked_value,
)
from chalicelib.ports.operations import (
    DeadLetter,
    FinishedJobs,
    FinishedPage,
    QueueOperations,
    ReconcilerLog,
    StatsStore,
)
from chalicelib.ports.queues import (
    HANDBACKS_ATTRIBUTE,
    JobMessage,
    JobQueue,
    job_message_of,
)
from chalicelib.ports.stream import (
    ChangeStream,
    EventPublisher,
    FailedStreamBatch,
    FailedStreamBatches,
    JobChange,
    ParkedRecordDrops,
)
from chalicelib.ports.subscribers import (
    CacheEntry,
    CacheStore,
    DeadLetterQueue,
    DeliveryLedger,
    LedgerOpening,
    TaskCompletion,
    WebhookAnswer,
    WebhookSender,
)
from chalicelib.ports.timers import Clock, Timer

__all__ = [
    "Artifact",
    "ArtifactInfo",
    "ArtifactPage",
    "ArtifactStore",
    "BlobStore",
    "CacheEntry",
    "CacheStore",
    "ChangeSet",
    "ChangeStream",
    "CLAIM_CHECKED",
    "claim_checked_value",
    "Clock",
    "DeadLetter",
    "DeadLetterQueue",
    "DeliveryLedger",
    "EventPublisher",
    "Expectation",
    "ExpectedWrite",
    "FailedStreamBatch",
    "FailedStreamBatches",
    "FinishedJobs",
    "FinishedPage",
    "HANDBACKS_ATTRIBUTE",
    "job_message_of",
    "JobChange",
    "JobMessage",
    "JobPage",
    "JobQuery",
    "JobQueue",
    "JobStore",
    "LedgerOpening",
    "ParkedRecordDrops",
    "QueueOperations",
    "ReconcilerLog",
    "REMOVE",
    "StatsStore",
    "SubmissionKey",
    "TaskCompletion",
    "Timer",
    "WebhookAnswer",
    "WebhookSender",
]
