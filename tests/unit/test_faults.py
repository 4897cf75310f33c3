"""PutEvents, SendMessage and claim fault injection and AWS request counting: pure, on fakes. That every
function reports its requests is tests/unit/test_invocation.py, over the app's handler map; that the
claim fault recognises the job store's real claim write is tests/functional/test_fault_injection.py."""
import pytest
import botocore.session
from botocore.awsrequest import AWSResponse

from chalicelib.adapters.faults import FailingPutEvents
from chalicelib.aws_requests import AwsRequestCounter


class Events:
    def __init__(self):
        self.sent = []

    def put_events(self, Entries):
        self.sent.append(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e{i}"} for i, _ in enumerate(Entries)]}


def test_refused_entries_answer_in_request_order_and_never_reach_the_bus():
    draws = iter([0.1, 0.9, 0.2, 0.95])  # rate 0.5: entries 0 and 2 are refused
    events = Events()
    client = FailingPutEvents(events, 0.5, draw=lambda: next(draws))
    response = client.put_events(Entries=[{"Detail": str(i)} for i in range(4)])
    assert response["FailedEntryCount"] == 2
    assert [e.get("ErrorCode") for e in response["Entries"]] == ["InternalFailure", None, "InternalFailure", None]
    assert [e.get("EventId") for e in response["Entries"]] == [None, "e0", None, "e1"]
    assert events.sent == [[{"Detail": "1"}, {"Detail": "3"}]]


def test_all_refused_sends_nothing():
    events = Events()
    response = FailingPutEvents(events, 1.0).put_events(Entries=[{"Detail": "x"}])
    assert response == {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure",
                                                            "ErrorMessage": response["Entries"][0]["ErrorMessage"]}]}
    assert events.sent == []


class _Raw:
    def stream(self, **kwargs):
        yield b"{}"


def test_counter_counts_each_request_by_service_and_operation_then_resets():
    client = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    counter = AwsRequestCounter()
    counter.attach(client)
    # Answers every request in-process (registered after the counter, so it sees them first).
    client.meta.events.register("before-send", lambda **kwargs: AWSResponse("https://x", 200, {}, _Raw()))
    client.get_item(TableName="t", Key={"pk": {"S": "a"}})
    client.get_item(TableName="t", Key={"pk": {"S": "b"}})
    client.put_item(TableName="t", Item={"pk": {"S": "c"}})
    assert counter.take() == {"dynamodb.GetItem": 2, "dynamodb.PutItem": 1}
    assert counter.take() == {}


def test_send_message_faults_are_connection_errors_the_queue_adapter_translates():
    from botocore.exceptions import EndpointConnectionError

    from chalicelib.adapters.faults import FailingSendMessage
    from chalicelib.adapters.sqs import SqsJobQueue
    from chalicelib.domain.errors import QueueUnavailableError
    from chalicelib.ports import JobMessage

    class Sqs:
        sent = []

        def send_message(self, **kwargs):
            self.sent.append(kwargs)
            return {"MessageId": "m"}

    draws = iter([0.1, 0.9])
    client = FailingSendMessage(Sqs(), 0.5, draw=lambda: next(draws))
    with pytest.raises(EndpointConnectionError):
        client.send_message(QueueUrl="q", MessageBody="{}")
    queue = SqsJobQueue(FailingSendMessage(Sqs(), 1.0), {"normal": "http://q/1/jobs"}, {"normal": "http://q/1/dlq"})
    with pytest.raises(QueueUnavailableError):
        queue.send(JobMessage("j", 1), priority="normal")
    assert client.send_message(QueueUrl="q", MessageBody="{}") == {"MessageId": "m"}


def test_claim_faults_fail_only_the_claim_write_and_write_nothing():
    from botocore.exceptions import ClientError

    from chalicelib.adapters.dynamodb_items import STATUS_KEY_VALUE, status_key
    from chalicelib.adapters.faults import FailingClaims

    class Ddb:
        writes = []

        def update_item(self, **kwargs):
            self.writes.append(kwargs)
            return {}

        def transact_write_items(self, **kwargs):
            self.writes.append(kwargs)
            return {}

    ddb = Ddb()
    claims = FailingClaims(ddb, 1.0)
    claim = {"Key": {}, "ExpressionAttributeValues": {STATUS_KEY_VALUE: {"S": status_key("acme", "running")}}}
    progress = {"Key": {}, "ExpressionAttributeValues": {":percent": {"N": "40"}}}
    retry = {"Key": {}, "ExpressionAttributeValues": {STATUS_KEY_VALUE: {"S": status_key("acme", "retrying")}}}
    completion = {"TransactItems": [{"Update": {"Key": {}}}, {"Put": {"Item": {"sk": {"S": "RUN#0001"}}}}]}
    with pytest.raises(ClientError):
        claims.update_item(**claim)
    assert claims.update_item(**progress) == {} and claims.update_item(**retry) == {}
    assert claims.transact_write_items(**completion) == {}
    assert ddb.writes == [progress, retry, completion]
