"""`jobpipe types`'s output: the job types the API takes as a table, and one type as its run
policy, its payload's JSON schema and a submit of each example payload the schema gives."""
from __future__ import annotations

import json
import shlex
from typing import Any

from rich.table import Table
from rich.text import Text

from jobpipe_client.progress_view import aligned
from jobpipe_client.terminal_text import shown

# description last: it is the one value that holds spaces.
TYPE_COLUMNS = ("type", "priority", "max_attempts", "timeout_s", "description")


def type_row(job_type: dict[str, Any]) -> list[str]:
    """A type's values for the TYPE_COLUMNS, whole, control characters escaped."""
    return [shown(job_type[column]) for column in TYPE_COLUMNS]


def types_table(types: list[dict[str, Any]]) -> Table:
    """On a terminal: one row per type, fitted to its width; every cell is Text, never markup."""
    table = Table(box=None, pad_edge=False)
    for column in TYPE_COLUMNS:
        table.add_column(column, no_wrap=column == "type",
                         justify="right" if column in ("max_attempts", "timeout_s") else "left")
    for job_type in types:
        table.add_row(*map(Text, type_row(job_type)))
    return table


def plain_types(types: list[dict[str, Any]]) -> str:
    """Into a pipe or a file: a header and one aligned line per type (`awk '{print $1}'`)."""
    return aligned(TYPE_COLUMNS, [type_row(t) for t in types])


def type_lines(job_type: dict[str, Any]) -> list[str]:
    """One type as lines: its name, description and run policy, its payload's JSON schema
    (JSON escapes every control character), then a `jobpipe submit` of each example payload
    the schema gives, quoted for a shell."""
    name = job_type["type"]
    lines = [f"{field}: {shown(job_type[field])}" for field in TYPE_COLUMNS]
    lines.append("payload_schema:")
    lines.extend(json.dumps(job_type["payload_schema"], indent=2).splitlines())
    examples = job_type["payload_schema"].get("examples")
    for example in examples if isinstance(examples, list) else ():
        if isinstance(example, dict):
            lines.append(f"example: jobpipe submit {shlex.quote(shown(name))} "
                         f"--payload {shlex.quote(json.dumps(example))}")
    return lines
