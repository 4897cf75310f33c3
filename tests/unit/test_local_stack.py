"""The local stack's preparation: the warm-up event every function answers at once, and the
ceiling applied to every function (through a stand-in for the boto3 session)."""

from chalicelib import invocation as invocation_module
from chalicelib.invocation import WARM_UP
from scripts import local_stack
from scripts.local_stack import apply_concurrency_ceiling, warm_up_event


class FakeLambda:
    def __init__(self):
        self.calls = []

    def put_function_concurrency(self, **kwargs):
        self.calls.append(("put", kwargs))

    def delete_function_concurrency(self, **kwargs):
        self.calls.append(("delete", kwargs))


class FakeSession:
    def __init__(self, client):
        self._client = client

    def client(self, name):
        assert name == "lambda"
        return self._client


def test_the_scripts_and_the_wrapper_agree_on_the_warm_up_key():
    assert local_stack.WARM_UP == WARM_UP


def test_every_event_function_answers_the_warm_up_event_without_doing_anything(monkeypatch):
    """Through the Chalice handler each function is deployed as (its event parsing included)."""
    from app import app
    from tests.unit.test_invocation import _event_functions

    def no_invocation(*args, **kwargs):
        raise AssertionError("the warm-up must return before the invocation scope (and any work)")

    monkeypatch.setattr(invocation_module, "invocation", no_invocation)
    functions = _event_functions(app)
    assert functions
    for name, handler in functions.items():
        assert handler(warm_up_event(), None) == {WARM_UP: getattr(handler, "func", handler).__name__}, name


def test_an_event_without_the_key_is_not_a_warm_up():
    from chalicelib.invocation import is_warm_up

    assert not is_warm_up({**warm_up_event(), WARM_UP: "yes"})
    assert not is_warm_up({"Records": []}) and not is_warm_up(None)


def test_the_ceiling_goes_on_every_function_and_0_removes_it():
    functions = {"APIHandler": "s-API-1", "JobWorker": "s-JobWorker-1"}
    client = FakeLambda()
    apply_concurrency_ceiling(FakeSession(client), functions, 2)
    apply_concurrency_ceiling(FakeSession(client), functions, 0)
    assert client.calls == [
        ("put", {"FunctionName": "s-API-1", "ReservedConcurrentExecutions": 2}),
        ("put", {"FunctionName": "s-JobWorker-1", "ReservedConcurrentExecutions": 2}),
        ("delete", {"FunctionName": "s-API-1"}),
        ("delete", {"FunctionName": "s-JobWorker-1"}),
    ]


def test_the_api_takes_its_own_ceiling_when_one_is_given():
    functions = {"APIHandler": "s-API-1", "JobWorker": "s-JobWorker-1"}
    client = FakeLambda()
    apply_concurrency_ceiling(FakeSession(client), functions, 4, api_ceiling=6)
    apply_concurrency_ceiling(FakeSession(client), functions, 0, api_ceiling=6)  # the API alone capped
    assert client.calls == [
        ("put", {"FunctionName": "s-API-1", "ReservedConcurrentExecutions": 6}),
        ("put", {"FunctionName": "s-JobWorker-1", "ReservedConcurrentExecutions": 4}),
        ("put", {"FunctionName": "s-API-1", "ReservedConcurrentExecutions": 6}),
        ("delete", {"FunctionName": "s-JobWorker-1"}),
    ]


def test_the_template_gives_the_api_the_same_ceilings():
    """infra/resources.json: ApiConcurrencyCeiling when not 0, else FunctionConcurrencyCeiling."""
    import json
    from pathlib import Path

    template = json.loads((Path(__file__).resolve().parents[2] / "infra" / "resources.json").read_text())
    api = template["Resources"]["APIHandler"]["Properties"]["ReservedConcurrentExecutions"]["Fn::If"]
    worker = template["Resources"]["JobWorker"]["Properties"]["ReservedConcurrentExecutions"]
    assert api[0] == "HasApiConcurrencyCeiling" and api[1] == {"Ref": "ApiConcurrencyCeiling"}
    assert api[2] == worker == {"Fn::If": ["HasFunctionConcurrencyCeiling", {"Ref": "FunctionConcurrencyCeiling"},
                                           {"Ref": "AWS::NoValue"}]}


class FakeApiGateway:
    """API Gateway as ministack has it after a deploy: the gateway responses the API's body
    declares (x-amazon-apigateway-gateway-responses) not imported, every type at its default."""

    def __init__(self, customized=None):
        self.customized = dict(customized or {})
        self.calls = []

    def get_gateway_responses(self, restApiId, limit=500):
        defaults = [{"responseType": t, "defaultResponse": True} for t in ("DEFAULT_4XX", "MISSING_AUTHENTICATION_TOKEN")
                    if t not in self.customized]
        return {"items": defaults + [{"defaultResponse": False, **r} for r in self.customized.values()]}

    def put_gateway_response(self, **kwargs):
        self.calls.append(("put", kwargs))
        self.customized[kwargs["responseType"]] = {k: v for k, v in kwargs.items() if k != "restApiId"}

    def create_deployment(self, **kwargs):
        self.calls.append(("deploy", kwargs))


GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": {
        "StatusCode": "404",
        "ResponseParameters": {"Headers": {"Content-Type": "'application/json'"}},
        "ResponseTemplates": {"application/json": '{"error": {"code": "route_not_found"}}'},
    },
    "DEFAULT_4XX": {
        "ResponseParameters": {"Headers": {"Content-Type": "'application/json'"}},
        "ResponseTemplates": {"application/json": '{"error": {"code": "gateway_refused"}}'},
    },
}
API_TEMPLATE = {"Resources": {"RestAPI": {"Type": "AWS::Serverless::Api",
                                          "Properties": {"StageName": "api", "GatewayResponses": GATEWAY_RESPONSES}}}}


def test_gateway_responses_the_emulator_left_out_are_put_and_the_stage_deployed_again():
    from scripts.local_stack import apply_gateway_responses

    client = FakeApiGateway()
    assert apply_gateway_responses(client, "abc123", API_TEMPLATE) is True
    assert client.calls == [
        ("put", {"restApiId": "abc123", "responseType": "MISSING_AUTHENTICATION_TOKEN", "statusCode": "404",
                 "responseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
                 "responseTemplates": {"application/json": '{"error": {"code": "route_not_found"}}'}}),
        ("put", {"restApiId": "abc123", "responseType": "DEFAULT_4XX",
                 "responseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
                 "responseTemplates": {"application/json": '{"error": {"code": "gateway_refused"}}'}}),
        ("deploy", {"restApiId": "abc123", "stageName": "api",
                    "description": "gateway responses the emulator's body import left out"}),
    ]
    # Once in effect (as on AWS, which imports them with the body), nothing is put or deployed.
    client.calls.clear()
    assert apply_gateway_responses(client, "abc123", API_TEMPLATE) is False
    assert client.calls == []


def test_a_template_without_gateway_responses_changes_nothing():
    from scripts.local_stack import apply_gateway_responses

    client = FakeApiGateway()
    assert apply_gateway_responses(client, "abc123", {"Resources": {}}) is False
    assert client.calls == []
