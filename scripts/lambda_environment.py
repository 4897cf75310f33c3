"""How large each function's environment can be on a stack: Lambda refuses one whose variables
(every name and value, in UTF-8 bytes) pass 4 KB, and CloudFormation then fails the deploy
half-way with an error naming neither the variable nor the stack name that made it too large.

The stack's name reaches every function several times over: POWERTOOLS_SERVICE_NAME is the
name, the event bus is named after it, and CloudFormation names each table and queue
`<stack>-<logical id>-<random suffix>` (a queue's name cut at SQS's 80 characters, a table's at
DynamoDB's 255), which the functions get as table names and queue URLs. A value is counted at
the longest it can be: a parameter at its value (one CloudFormation does not show, NoEcho, at its
MaxLength of 4-byte characters), a name at the longest CloudFormation can generate.
`scripts/deploy.py` refuses a stack whose functions' environment could pass the limit, one line,
before anything is uploaded.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from scripts.stack_config import MASKED

LAMBDA_ENVIRONMENT_BYTES = 4096
# CloudFormation's generated names: `<stack>-<logical id>-<suffix>`; the suffix is 12 or 13
# letters and digits (counted at 13).
GENERATED_SUFFIX_CHARS = 13
# The longest name each service takes (what a generated name is cut to).
NAME_MAX_CHARS = {"AWS::SQS::Queue": 80, "AWS::DynamoDB::Table": 255, "AWS::S3::Bucket": 63}
# A queue URL: https://sqs.<region>.<the partition's domain>/<12-digit account>/<name>; the
# domain counted at the longest a partition has (amazonaws.com.cn).
QUEUE_URL_DOMAIN_CHARS = len("amazonaws.com.cn")
ACCOUNT_ID_CHARS = 12
# UTF-8 takes at most 4 bytes a character; CloudFormation's MaxLength counts characters.
UTF8_MAX_BYTES = 4


def _parameter_bytes(spec: Mapping[str, Any], value: Any) -> int:
    """A parameter's value in bytes; a value not known (none, or MASKED) at its longest."""
    if value is not None and value != MASKED:
        return len(str(value).encode())
    if "AllowedValues" in spec:
        return max(len(str(v).encode()) for v in spec["AllowedValues"])
    if spec.get("Type") == "Number":
        return max(len(str(spec.get(bound, 10 ** 12))) for bound in ("MinValue", "MaxValue"))
    if "MaxLength" not in spec:
        raise ValueError("a parameter reaching a function's environment has no MaxLength: its size has no bound")
    return int(spec["MaxLength"]) * UTF8_MAX_BYTES


def _generated_name(kind: str, logical: str, stack: str) -> int:
    return min(NAME_MAX_CHARS[kind], len(stack) + 1 + len(logical) + 1 + GENERATED_SUFFIX_CHARS)


def _value_bytes(template: Mapping[str, Any], node: Any, stack: str, region: str, values: Mapping[str, str]) -> int:
    """The most bytes `node` (an environment variable's value) can resolve to."""
    parameters = template.get("Parameters") or {}
    resources = template.get("Resources") or {}
    if isinstance(node, (str, int, float)) and not isinstance(node, bool):
        return len(str(node).encode())
    if isinstance(node, dict) and len(node) == 1:
        (function, args), = node.items()
        if function == "Ref" and args == "AWS::StackName":
            return len(stack)
        if function == "Ref" and args == "AWS::Region":
            return len(region)
        if function == "Ref" and args in parameters:
            return _parameter_bytes(parameters[args], values.get(args))
        if function == "Ref" and resources.get(args, {}).get("Type") in NAME_MAX_CHARS:
            kind = resources[args]["Type"]
            name = _generated_name(kind, args, stack)
            if kind == "AWS::SQS::Queue":
                return len(f"https://sqs.{region}./") + QUEUE_URL_DOMAIN_CHARS + ACCOUNT_ID_CHARS + 1 + name
            return name
        if function == "Fn::GetAtt" and args[1] == "Name":
            named = resources[args[0]]["Properties"]["Name"]
            return _value_bytes(template, named, stack, region, values)
        if function == "Fn::Sub" and isinstance(args, str):
            fixed = re.sub(r"\$\{[^}]+\}", "", args)
            return len(fixed.encode()) + sum(_value_bytes(template, {"Ref": name}, stack, region, values)
                                             for name in re.findall(r"\$\{([^}.]+)\}", args))
        if function == "Fn::If":
            return max(_value_bytes(template, branch, stack, region, values) for branch in args[1:])
    raise ValueError(f"cannot tell how long a function's environment value {node!r} can be")


def environments(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Function -> its environment's variables as the template writes them (Globals' and its own)."""
    shared = ((template.get("Globals") or {}).get("Function") or {}).get("Environment", {}).get("Variables", {})
    return {name: {**shared, **resource["Properties"].get("Environment", {}).get("Variables", {})}
            for name, resource in (template.get("Resources") or {}).items()
            if resource.get("Type") == "AWS::Serverless::Function"}


def environment_bytes(template: Mapping[str, Any], stack: str, region: str,
                      values: Mapping[str, str]) -> dict[str, int]:
    """Function -> the most bytes its environment can take on `stack` in `region`, with the
    parameters at `values` (one missing or MASKED at its longest)."""
    return {function: sum(len(name.encode()) + _value_bytes(template, value, stack, region, values)
                          for name, value in variables.items())
            for function, variables in environments(template).items()}


def longest_stack_name(template: Mapping[str, Any], region: str, values: Mapping[str, str]) -> int:
    """The longest stack name (at most CloudFormation's 128 characters) whose functions'
    environments all fit; 0 when none does."""
    for length in range(128, 0, -1):
        if max(environment_bytes(template, "s" * length, region, values).values()) <= LAMBDA_ENVIRONMENT_BYTES:
            return length
    return 0


def environment_problem(template: Mapping[str, Any], stack: str, region: str,
                        values: Mapping[str, str]) -> str | None:
    """The line refusing a deploy of `stack` whose largest function environment could pass
    Lambda's 4 KB, naming that function and what would fit; None when every one fits."""
    sizes = environment_bytes(template, stack, region, values)
    function, size = max(sizes.items(), key=lambda item: item[1])
    if size <= LAMBDA_ENVIRONMENT_BYTES:
        return None
    fits = longest_stack_name(template, region, values)
    shorter = (f"a stack name of at most {fits} characters fits with these parameters" if fits
               else "no stack name fits with these parameters: shorten the longest of them")
    masked = sorted(name for name, value in values.items() if value == MASKED)
    counted = (f" ({', '.join(masked)} kept, not shown, so counted at the longest allowed: give "
               f"{'=..., '.join(masked)}=... to count the value)") if masked else ""
    return (f"stack {stack} ({len(stack)} characters) could give function {function} an environment of "
            f"{size:,} bytes, over Lambda's {LAMBDA_ENVIRONMENT_BYTES:,} (the stack's name is in its table names, "
            f"queue URLs and event bus){counted}: {shorter}. Nothing was deployed")
