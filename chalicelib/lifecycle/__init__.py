"""Every status change of a job happens in this package, and nowhere else.

Each method computes the change from the transition table, then asks the store for a
conditional write against the status and version it read. A lost race surfaces as
StaleJobError from the store; the methods here re-read and decide again where that is safe.
Two writes state what they require of the job instead (`JobStore.apply_expected`) and decide
on what a refused write returns: the claim, the one write per job on the worker's hot path,
writes first and reads nothing (see `claims.py`); a cancel request on a running job is
conditioned on its attempt, not its version, which each progress write moves (see `cancel.py`).

`JobLifecycle` is the one object that makes them, composed of a module per family of
transitions: `admission.py` (submit, spawn), `claims.py`, `attempts.py` (progress and an
attempt's outcome), `dead_letters.py`, `cancel.py`, `reconcile.py`; `transitions.py` holds
what they share (the ports, the table's check, a job's end).

Where a shared step lives, for a reader following one from a family's method:

    JobTransitions (transitions.py)   the ports, the table's check, `_finish` (a job's end)
      ├─ DeadLetters (dead_letters.py)   `_dead_letter`, `park_owed_letter`, `park_letter`: a failed job's letter
      │    └─ Attempts (attempts.py)     progress, `complete`, `fail_attempt`, `mark_canceled`, `_with_fresh`
      │         ├─ Claims (claims.py)        the claim
      │         └─ Reconciliation (reconcile.py)  what the reconciler ends or sends again
      ├─ Admission (admission.py)        submit, spawn, rerun (`check_finished`)
      └─ Cancellation (cancel.py)        cancel requests
"""
from __future__ import annotations

from chalicelib.lifecycle.admission import Admission, check_finished
from chalicelib.lifecycle.attempts import retry_delay_s
from chalicelib.lifecycle.cancel import Cancellation
from chalicelib.lifecycle.claims import Claim, ClaimOutcome, Claims
from chalicelib.lifecycle.reconcile import ReconcileOutcome, Reconciliation, SendAfterOutcomeError
from chalicelib.lifecycle.transitions import Clock, transition

__all__ = [
    "Claim",
    "ClaimOutcome",
    "Clock",
    "JobLifecycle",
    "ReconcileOutcome",
    "SendAfterOutcomeError",
    "check_finished",
    "retry_delay_s",
    "transition",
]


class JobLifecycle(Admission, Cancellation, Claims, Reconciliation):
    """Every status change of a job: built with its ports as `JobTransitions` takes them."""
