"""Deploy the packaged stack (build/sam.json + build/deployment.zip) through CloudFormation,
as `aws cloudformation package` + `deploy` would: upload the zip, point every CodeUri at it,
create and execute a change set. The endpoint comes from AWS_ENDPOINT_URL (boto3 reads it).

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

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT_BUCKET = "jobpipe-deploy-artifacts"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


class DeployError(RuntimeError):
    pass


def _upload(s3: Any, zip_path: Path, stack: str) -> str:
    try:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    data = zip_path.read_bytes()
    key = f"{stack}/{hashlib.sha256(data).hexdigest()}.zip"
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=data)
    s3.head_object(Bucket=ARTIFACT_BUCKET, Key=key)  # a missing object would deploy a mock function
    return f"s3://{ARTIFACT_BUCKET}/{key}"


def _upload_template(s3: Any, template: dict[str, Any], stack: str) -> str:
    """The template as an S3 object: a TemplateBody is limited to 51,200 bytes, a TemplateURL
    to 1 MB (what `aws cloudformation deploy --s3-bucket` does too)."""
    data = json.dumps(template, separators=(",", ":")).encode()
    key = f"{stack}/{hashlib.sha256(data).hexdigest()}.template.json"
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=data)
    return f"{s3.meta.endpoint_url.rstrip('/')}/{ARTIFACT_BUCKET}/{key}"


def deploy(build_dir: Path, stack: str, parameters: Mapping[str, str], session: Any = None) -> dict[str, str]:
    """Create or update `stack`; returns its outputs, plus `ApiUrl` for the emulator's gateway."""
    session = session or boto3.session.Session()
    s3, cfn = session.client("s3"), session.client("cloudformation")
    template = json.loads((build_dir / "sam.json").read_text())
    code_uri = _upload(s3, build_dir / "deployment.zip", stack)
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
        TemplateURL=_upload_template(s3, template, stack),
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
    parameters = dict(arg.split("=", 1) for arg in argv[2:])
    print(json.dumps(deploy(build_dir, stack, parameters), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
