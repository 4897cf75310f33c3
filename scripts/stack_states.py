"""What a deploy does with the stack it finds, by the state DescribeStacks gives it (StackStatus).

A stack in a state CloudFormation takes no update in is refused before anything is uploaded,
in one line naming the state and what brings the stack back to one a deploy takes. A first
create that rolled back (ROLLBACK_COMPLETE) and a create never executed (REVIEW_IN_PROGRESS)
are created again (scripts/deploy.py); any other state is updated.
"""
from __future__ import annotations

from typing import Optional


def refusal(stack: str, status: str) -> Optional[str]:
    """The line refusing a deploy of `stack` found in `status`, saying what to do; None when a
    deploy may go on."""
    if status == "UPDATE_ROLLBACK_FAILED":
        return (f"stack {stack} is UPDATE_ROLLBACK_FAILED (an update failed, and so did rolling it back): "
                f"CloudFormation takes no update of it until `aws cloudformation continue-update-rollback "
                f"--stack-name {stack}` (with --resources-to-skip for those the stack's events show failing to roll "
                "back) has brought it to UPDATE_ROLLBACK_COMPLETE; then deploy again. Nothing was deployed")
    return None
