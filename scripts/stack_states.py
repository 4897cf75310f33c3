"""What a deploy does with the stack it finds, by the state DescribeStacks gives it (StackStatus).

A stack in a state CloudFormation takes no update in is refused before anything is uploaded,
in one line naming the state and what brings the stack back to one a deploy takes. A first
create that rolled back (ROLLBACK_COMPLETE) and a create never executed (REVIEW_IN_PROGRESS)
are created again, said first (`recreating`); any other state is updated. A deploy that stops waiting
on its own create or update while CloudFormation is still at it says so (still_running).
"""
from __future__ import annotations

from typing import Optional


# A state another operation (a deploy, a change by hand) is still changing the stack in -> what it
# is doing, and the `aws cloudformation` command that waits for it to end (the waiter that stops on
# every state it may end in) or, for an import, that shows where it is. A deploy does not wait on
# it: what the operation leaves (a failed create, a stack deleted) decides what a deploy should do.
IN_PROGRESS: dict[str, tuple[str, str]] = {
    "CREATE_IN_PROGRESS": ("being created", "wait stack-create-complete"),
    "ROLLBACK_IN_PROGRESS": ("its first create failed and is rolling back", "wait stack-create-complete"),
    "UPDATE_IN_PROGRESS": ("being updated", "wait stack-update-complete"),
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": ("an update is removing what it replaced", "wait stack-update-complete"),
    "UPDATE_ROLLBACK_IN_PROGRESS": ("an update failed and is rolling back", "wait stack-rollback-complete"),
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": ("a rolled-back update is removing what it made",
                                                     "wait stack-rollback-complete"),
    "DELETE_IN_PROGRESS": ("being deleted", "wait stack-delete-complete"),
    "IMPORT_IN_PROGRESS": ("resources are being imported into it", "describe-stacks"),
    "IMPORT_ROLLBACK_IN_PROGRESS": ("an import failed and is rolling back", "describe-stacks"),
}


def refusal(stack: str, status: str) -> Optional[str]:
    """The line refusing a deploy of `stack` found in `status`, saying what to do; None when a
    deploy may go on."""
    if status in IN_PROGRESS:
        doing, command = IN_PROGRESS[status]
        how = "shows its state" if command == "describe-stacks" else "waits for it"
        then = ", which then creates it anew" if status == "DELETE_IN_PROGRESS" else ""
        return (f"stack {stack} is {status} ({doing}, by another deploy or by hand): deploy again once that has "
                f"ended{then} (`aws cloudformation {command} --stack-name {stack}` {how}). Nothing was deployed")
    if status == "ROLLBACK_FAILED":
        return (f"stack {stack} is ROLLBACK_FAILED (its first create failed, and so did deleting what it had made): "
                f"it can only be deleted, by `aws cloudformation delete-stack --stack-name {stack}`; then deploy "
                "again, which creates it anew. Nothing was deployed")
    if status == "DELETE_FAILED":
        return (f"stack {stack} is DELETE_FAILED (a delete could not remove resources the stack's events name): it "
                f"can only be deleted, by `aws cloudformation delete-stack --stack-name {stack}` again (with "
                "--retain-resources for those that will not go, to remove by hand); then deploy again, which "
                "creates it anew. Nothing was deployed")
    if status == "UPDATE_ROLLBACK_FAILED":
        return (f"stack {stack} is UPDATE_ROLLBACK_FAILED (an update failed, and so did rolling it back): "
                f"CloudFormation takes no update of it until `aws cloudformation continue-update-rollback "
                f"--stack-name {stack}` (with --resources-to-skip for those the stack's events show failing to roll "
                "back) has brought it to UPDATE_ROLLBACK_COMPLETE; then deploy again. Nothing was deployed")
    return None


# A state a stack was left in with nothing made -> what the deploy says as it creates it again.
RECREATED = {
    "ROLLBACK_COMPLETE": "(its first create failed and left nothing); deleting it to create it again",
    "REVIEW_IN_PROGRESS": "(a create that never ran, nothing made): creating it",
}


def recreating(stack: str, status: str) -> Optional[str]:
    """The line a deploy says as it creates again `stack`, found in `status` with nothing made
    (a first create rolled back, a create change set never executed); None for any other state."""
    doing = RECREATED.get(status)
    return None if doing is None else f"stack {stack} is {status} {doing}"


def still_running(stack: str, status: str, waited_s: float) -> str:
    """The line ending a deploy that stopped waiting after `waited_s` seconds while CloudFormation
    still has `stack` in `status` (one of IN_PROGRESS: a DynamoDB index backfilling a large
    table can take longer than the deploy waits): it has neither deployed nor failed."""
    doing, command = IN_PROGRESS[status]
    how = "shows its state" if command == "describe-stacks" else "waits for its end"
    return (f"stack {stack} is still {status} ({doing}) after {waited_s / 60:.0f} minutes: this deploy stopped "
            f"waiting, and CloudFormation goes on (`aws cloudformation {command} --stack-name {stack}` {how}; "
            "the stack's events say how it went)")
