"""The Chalice app as a WSGI application, answering as the deployed API Gateway stage does, so a
WSGI client (schemathesis' in-process transport) can call it with any request.

Each request goes through Chalice's own LocalGateway (as `chalice.test.Client` sends it), with
what the stage does around the function: path parameters arrive percent-decoded (API Gateway's
`pathParameters`), and a method and path no route takes is the stage's gateway response, 404
`route_not_found` (infra/resources.json), not LocalGateway's 403."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from chalice import Chalice
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException, RouteMatcher

ROOT = Path(__file__).resolve().parents[2]
_REASONS = {200: "OK", 202: "Accepted", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
            415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


def gateway_response(kind: str) -> tuple[int, str]:
    """(status, body) of the stage's gateway response `kind` as infra/resources.json declares it."""
    resources = json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"]
    api = next(r for r in resources.values() if "GatewayResponses" in r.get("Properties", {}))
    response = api["Properties"]["GatewayResponses"][kind]
    return int(response["StatusCode"]), response["ResponseTemplates"]["application/json"]


class _DecodingGateway(LocalGateway):
    """LocalGateway whose events carry decoded path parameters, as API Gateway's do."""

    def _generate_lambda_event(self, method: str, path: str, headers: Any, body: Any) -> Any:
        event = super()._generate_lambda_event(method, path, headers, body)
        event["pathParameters"] = {k: unquote(v) for k, v in (event.get("pathParameters") or {}).items()}
        return event


def wsgi_app(app: Chalice) -> Callable[[dict, Callable], Iterable[bytes]]:
    """A WSGI application answering each request with `app` behind a local API Gateway stage."""
    gateway = _DecodingGateway(app, Config(chalice_stage="dev", config_from_disk={}))
    matcher = RouteMatcher(list(app.routes))
    not_found = gateway_response("MISSING_AUTHENTICATION_TOKEN")

    def call(environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        query = environ.get("QUERY_STRING", "")
        if "?" not in uri and query:
            uri = f"{uri}?{query}"
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            route = matcher.match_route(uri).route
        except ValueError:
            route = None
        if route is None or method not in app.routes[route]:
            status, text = not_found[0], not_found[1].encode()
            answer = {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": text}
        else:
            try:
                answer = gateway.handle_request(method=method, path=uri, headers=headers, body=body)
            except LocalGatewayException as exc:
                answer = {"statusCode": exc.CODE, "headers": exc.headers, "body": exc.body or b""}
        content = answer.get("body") or b""
        if answer.get("isBase64Encoded"):
            import base64

            content = base64.b64decode(content)
        elif isinstance(content, str):
            content = content.encode("utf-8")
        status = answer["statusCode"]
        pairs = [(k, str(v)) for k, v in (answer.get("headers") or {}).items()]
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            pairs.extend((name, str(v)) for v in values)
        start_response(f"{status} {_REASONS.get(status, 'Status')}", pairs)
        return [content]

    return call
