"""Deploy the packaged stack (build/sam.json + build/deployment.zip) through CloudFormation,
as `aws cloudformation package` + `deploy` would: upload the zip, point every CodeUri at it,
create and execute a change set. The endpoint comes from AWS_ENDPOINT_URL (boto3 reads it).

The code goes to `jobpipe-artifacts-<account>-<region>`, created only if missing. Every S3
call on it names the account as `ExpectedBucketOwner` (CreateBucket takes none; a head
confirms the new bucket right after), so a bucket of that name in another account is an
error, never the source of the functions' code.

Usage: python -m scripts.deploy [BUILD_DIR] [STACK_NAME] [Key=Value ...]
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import boto3
from botocore.exceptions import ClientError

from scripts.stack_config import StackConfigError, check_parameters

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT_BUCKET_PREFIX = "jobpipe-artifacts"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


class DeployError(RuntimeError):
    pass


def artifact_bucket_name(account: str, region: str) -> str:
    return f"{ARTIFACT_BUCKET_PREFIX}-{account}-{region}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_artifact_bucket(s3: Any, account: str, region: str) -> str:
    """The account's artifact bucket, created if missing; raises DeployError if the name is
    taken by another account or the bucket cannot be reached."""
    bucket = artifact_bucket_name(account, region)
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        return bucket
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(
                f"artifact bucket {bucket} exists but account {account} does not own it or may not use it "
                f"({_error_code(exc)}); deploy with credentials of the account that owns it"
            ) from exc
    create: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 refuses a LocationConstraint naming itself
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**create)
    except ClientError as exc:
        if _error_code(exc) != "BucketAlreadyOwnedByYou":  # another deploy of ours won the race
            raise DeployError(f"could not create artifact bucket {bucket}: {_error_code(exc)}: {exc}") from exc
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
    except ClientError as exc:
        raise DeployError(f"artifact bucket {bucket} is not owned by account {account}") from exc
    return bucket


def _upload(s3: Any, bucket: str, account: str, zip_path: Path, stack: str) -> str:
    data = zip_path.read_bytes()
    key = f"{stack}/{hashlib.sha256(data).hexdigest()}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ExpectedBucketOwner=account)
    # a missing object would deploy a mock function
    s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=account)
    return f"s3://{bucket}/{key}"


def _upload_template(s3: Any, bucket: str, account: str, template: dict[str, Any], stack: str) -> str:
    """The template as an S3 object: a TemplateBody is limited to 51,200 bytes, a TemplateURL
    to 1 MB (what `aws cloudformation deploy --s3-bucket` does too)."""
    data = json.dumps(template, separators=(",", ":")).encode()
    key = f"{stack}/{hashlib.sha256(data).hexdigest()}.template.json"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ExpectedBucketOwner=account)
    return f"{s3.meta.endpoint_url.rstrip('/')}/{bucket}/{key}"


def deploy(build_dir: Path, stack: str, parameters: Mapping[str, str], session: Any = None) -> dict[str, str]:
    """Create or update `stack`; returns its outputs, plus `ApiUrl` for the emulator's gateway."""
    session = session or boto3.session.Session()
    cfn = session.client("cloudformation")
    template = json.loads((build_dir / "sam.json").read_text())
    account = session.client("sts").get_caller_identity()["Account"]
    s3 = session.client("s3")
    bucket = ensure_artifact_bucket(s3, account, session.region_name or "us-east-1")
    code_uri = _upload(s3, bucket, account, build_dir / "deployment.zip", stack)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    try:
        cfn.describe_stacks(StackName=stack)
        change_type = "UPDATE"
    except cfn.exceptions.ClientError:
        change_type = "CREATE"
    change_set = f"jobpipe-{int(time.time() * 1000)}"
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName=change_set,
        ChangeSetType=change_type,
        TemplateURL=_upload_template(s3, bucket, account, template, stack),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
        Capabilities=CAPABILITIES,
    )
    cfn.get_waiter("change_set_create_complete").wait(
        StackName=stack, ChangeSetName=change_set, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
    )
    cfn.execute_change_set(StackName=stack, ChangeSetName=change_set)
    waiter = "stack_create_complete" if change_type == "CREATE" else "stack_update_complete"
    try:
        cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
    except Exception as exc:
        failures = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]
            if "FAILED" in e["ResourceStatus"]
        ]
        raise DeployError(f"stack {stack} did not deploy: {'; '.join(failures) or exc}") from exc
    stack_info = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack_info.get("Outputs", [])}
    endpoint = session.client("s3").meta.endpoint_url.rstrip("/")
    if "amazonaws.com" not in endpoint:
        outputs["ApiUrl"] = f"{endpoint}/restapis/{outputs['RestAPIId']}/api/_user_request_"
    else:
        outputs["ApiUrl"] = outputs["EndpointURL"].rstrip("/")
    return outputs


def main(argv: list[str]) -> None:
    build_dir = ROOT / (argv[0] if argv else "build")
    stack = argv[1] if len(argv) > 1 else "jobpipe"
    malformed = [arg for arg in argv[2:] if "=" not in arg]
    if malformed:
        print(f"deploy: parameters are Key=Value, not {malformed[0]!r}", file=sys.stderr)
        sys.exit(2)
    parameters = dict(arg.split("=", 1) for arg in argv[2:])
    try:  # e.g. ErpWebhookUrl without an ErpWebhookSecret of 32+ characters
        parameters = check_parameters(parameters)
    except StackConfigError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        print(json.dumps(deploy(build_dir, stack, parameters), indent=2))
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
