"""`make run`: start the emulator (unless AWS_ENDPOINT_URL points elsewhere), deploy the
packaged stack to it, print the API URL and a dev token, then show the emulator's and the
functions' logs until Ctrl-C, which stops everything this started."""
from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

import boto3
import requests
from botocore.exceptions import BotoCoreError, ClientError

from scripts.deploy import DeployError, deploy, one_line
from scripts.emulator import Emulator, EmulatorError
from scripts.local_stack import prepare
from scripts.stack_config import (
    LOCAL_FUNCTION_CONCURRENCY,
    StackConfigError,
    StackParameters,
    from_environment,
    local_api_ceiling,
)

EXIT_BAD_CONFIG = 2

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".local"
STACK = os.environ.get("JOBPIPE_STACK", "jobpipe")
DEFAULT_PORT = 4566
EXIT_INTERRUPTED = 130  # a shell's code for a run ended by Ctrl-C


def gateway_port(environ: dict[str, str]) -> int:
    """GATEWAY_PORT (default 4566): a bad value ends the run before anything starts, one line,
    exit code 2."""
    text = environ.get("GATEWAY_PORT", "").strip() or str(DEFAULT_PORT)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        print(f"make run: GATEWAY_PORT must be a port number from 1 to 65535 (got {text[:20]!r})",
              file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_CONFIG)
    return int(text)


def check_stack_name(stack: str) -> None:
    """JOBPIPE_STACK (default jobpipe) must be a name CloudFormation takes: a bad one ends the
    run before anything starts, one line, exit code 2, not after the emulator and the upload."""
    from scripts.deploy import STACK_NAME, STACK_NAME_RULE

    if not STACK_NAME.fullmatch(stack):
        print(f"make run: JOBPIPE_STACK must be a stack name: {STACK_NAME_RULE} (got {stack[:80]!r})",
              file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_CONFIG)


def stack_parameters(environ: dict[str, str]) -> StackParameters:
    """The stack's parameters from the environment (scripts/stack_config.py); a bad value ends
    the run here, before anything starts, with one line on stderr and exit code 2."""
    try:
        return from_environment(environ)
    except StackConfigError as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_CONFIG)


def auth_secret() -> str:
    """JOBPIPE_AUTH_SECRET, or one generated once and kept in .local/ for later runs."""
    if os.environ.get("JOBPIPE_AUTH_SECRET"):
        return os.environ["JOBPIPE_AUTH_SECRET"]
    STATE.mkdir(exist_ok=True)
    path = STATE / "auth-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def follow_function_logs(session: boto3.session.Session, stop: threading.Event) -> None:
    """Print new CloudWatch Logs lines of the stack's functions (where the emulator puts them)."""
    logs = session.client("logs")
    since: dict[str, int] = {}
    seen: dict[str, set[tuple]] = {}
    started = int(time.time() * 1000)
    while not stop.is_set():
        try:
            # each function's own group, infra/resources.json (LoggingConfig)
            groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{STACK}/").get("logGroups", [])
            for group in groups:
                name = group["logGroupName"]
                start = since.get(name, started)
                events = logs.filter_log_events(logGroupName=name, startTime=start).get("events", [])
                for event in events:
                    key = (event.get("logStreamName"), event["timestamp"], event["message"])
                    if key in seen.setdefault(name, set()):
                        continue
                    seen[name].add(key)
                    short = name.rsplit("/", 1)[-1]
                    print(f"[{short}] {event['message'].rstrip()}", flush=True)
                if events:
                    latest = max(e["timestamp"] for e in events)
                    if latest > start:
                        since[name] = latest
                        seen[name] = {k for k in seen[name] if k[1] == latest}
        except Exception as exc:  # the emulator going away ends the loop below
            if stop.is_set():
                return
            print(f"[logs] {exc}", file=sys.stderr, flush=True)
        stop.wait(1.0)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _fail(message: str, code: int = 1) -> None:
    print(f"make run: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main() -> None:
    # Ctrl-C (and a plain `kill`) end the run the same way, stopping what it started.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    parameters = stack_parameters(dict(os.environ)).as_parameters()
    port = gateway_port(dict(os.environ))
    check_stack_name(STACK)
    emulator = None
    stop = threading.Event()
    ready = False
    try:
        if not os.environ.get("AWS_ENDPOINT_URL"):
            emulator = Emulator(
                port, log_level=os.environ.get("MINISTACK_LOG_LEVEL", "WARNING"), inherit_output=True
            )
            print(f"starting ministack on {emulator.endpoint}", flush=True)
            try:
                emulator.start()
            except EmulatorError as exc:
                _fail(str(exc))
            os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        session = boto3.session.Session()
        secret = parameters.setdefault("AuthSecret", auth_secret())
        parameters.setdefault("DemoJobTypes", "true")  # the demo types, for trying things out
        parameters.setdefault("LetterArrivalAlarms", "false")  # ministack provisions no metric-math alarm
        parameters.setdefault("FunctionConcurrencyCeiling", str(LOCAL_FUNCTION_CONCURRENCY))
        parameters.setdefault("ApiConcurrencyCeiling",
                              str(local_api_ceiling(int(parameters["FunctionConcurrencyCeiling"]))))
        shown = ", ".join(f"{k}={v}" for k, v in parameters.items() if "Secret" not in k)
        print(f"deploying stack {STACK!r} with {shown}", flush=True)
        try:
            outputs = deploy(ROOT / "build", STACK, parameters)
            from chalicelib.api.auth import issue_token

            # Both roles, for trying everything; 24 h, the stack's default TokenMaxLifetimeSeconds.
            token = issue_token(secret, user="dev", tenant="dev", roles=["admin", "operator"], ttl_s=24 * 3600)
            prepared = prepare(session, STACK, outputs["ApiUrl"], int(parameters["FunctionConcurrencyCeiling"]),
                               token=token, api_ceiling=int(parameters["ApiConcurrencyCeiling"]))
        except StackConfigError as exc:  # the stack's name or parameters, refused before any upload
            _fail(f"the stack was not deployed: {exc}", EXIT_BAD_CONFIG)
        except (DeployError, ClientError, BotoCoreError, requests.RequestException, OSError) as exc:
            if emulator is not None and emulator.process.poll() is not None:
                _fail(f"ministack exited with code {emulator.process.returncode} before the stack was ready")
            _fail(f"the stack did not deploy: {one_line(exc)}")
        warmed = prepared["warm"]
        print(f"warmed {warmed['functions']} functions in {warmed['seconds']} s "
              f"(at most {prepared['ceiling'] or 'unlimited'} processes per function, "
              f"{prepared['api_ceiling'] or 'unlimited'} for the API)", flush=True)
        for function, error in warmed["failed"].items():
            print(f"make run: warning: {function} did not warm up ({error}); its first request starts it",
                  file=sys.stderr, flush=True)
        api = outputs["ApiUrl"]
        print(
            f"\njobpipe is deployed as stack {STACK!r} on {os.environ['AWS_ENDPOINT_URL']}\n\n"
            f"export JOBPIPE_API_URL={api}\n"
            f"export JOBPIPE_TOKEN={token}\n\n"
            f"dashboard: {api}/dashboard#token={token}\n\n"
            f"curl -s $JOBPIPE_API_URL/health\n"
            f"curl -s -X POST $JOBPIPE_API_URL/jobs -H \"Authorization: Bearer $JOBPIPE_TOKEN\" "
            f"-H 'Content-Type: application/json' "
            f"-d '{{\"type\": \"demo.steps\", \"payload\": {{\"steps\": 10, \"step_ms\": 300}}}}'\n\n"
            "# or with the CLI (`source .venv/bin/activate` puts `jobpipe` on the PATH):\n"
            "jobpipe submit demo.steps --payload '{\"steps\": 10, \"step_ms\": 300}' --watch\n"
            "jobpipe list\n\n"
            "Showing function logs; Ctrl-C stops everything.\n",
            flush=True,
        )
        ready = True
        follower = threading.Thread(target=follow_function_logs, args=(session, stop), daemon=True)
        follower.start()
        while emulator is None or emulator.process.poll() is None:
            time.sleep(0.5)
        _fail(f"ministack exited with code {emulator.process.returncode}")
    except KeyboardInterrupt:
        if ready:  # the way a running stack is stopped
            print("\nstopping", flush=True)
        else:
            stopping = "; stopping the emulator" if emulator is not None else ""
            print(f"\nmake run: interrupted before the stack was ready{stopping}", file=sys.stderr, flush=True)
            sys.exit(EXIT_INTERRUPTED)
    finally:
        # A second Ctrl-C must not cut the stop short (the watchdog would still end the group).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop.set()
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    main()
