"""The composition root builds one client per AWS service and shares it between adapters."""
from chalicelib.composition import Container
from chalicelib.settings import Settings


class Events:
    def __init__(self) -> None:
        self.registered: list[str] = []

    def register(self, name, handler) -> None:
        self.registered.append(name)

    def register_first(self, name, handler) -> None:
        self.registered.append(name)


class FakeClient:
    def __init__(self, service: str) -> None:
        self.service = service
        self.meta = type("Meta", (), {"events": Events()})()


class FakeSession:
    def __init__(self) -> None:
        self.built: list[str] = []

    def client(self, service, config=None):
        self.built.append(service)
        return FakeClient(service)


def settings(**extra) -> Settings:
    return Settings(table_name="jobs", idempotency_table_name="idem", queue_url_high="h", queue_url_normal="n",
                    queue_url_low="l", dead_letter_url="d", stats_table_name="stats", bucket_name="bucket",
                    auth_secret="s" * 32, **extra)


def test_one_client_per_service_shared_by_the_adapters():
    session = FakeSession()
    container = Container(settings(), session=session)
    assert container.client("dynamodb") is container.client("dynamodb")
    assert container.store._ddb is container.artifacts._ddb is container.stats._ddb is container.cache_store._ddb
    assert container.queue._sqs is container.queue_operations._sqs
    assert sorted(session.built) == ["dynamodb", "s3", "sqs"]


def test_the_request_counter_is_attached_once_per_client():
    container = Container(settings(count_aws_requests=True), session=FakeSession())
    client = container.client("dynamodb")
    container.client("dynamodb")
    container.store, container.finished_jobs  # noqa: B018 (built for their clients)
    assert sorted(client.meta.events.registered) == ["before-call.*.*", "before-send"]


def test_links_to_objects_are_signed_with_sigv4(monkeypatch):
    """A presigned link is Signature Version 4: S3 takes SigV2 only in its oldest regions and
    refuses a SigV2 link that overrides a response header (the artifact's disposition) as anonymous."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    session = boto3.session.Session(region_name="us-east-1")
    url = Container(settings(), session=session).blobs.presigned_url(
        "jobs/j/artifacts/a.bin", 60, content_disposition='attachment; filename="a.bin"')
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "Signature=" not in url.replace("X-Amz-Signature=", "")


def test_links_to_objects_name_the_buckets_own_region(monkeypatch):
    """A presigned link goes to the bucket's regional host, not the global s3.amazonaws.com: a
    bucket in a region opened after March 2019 answers the global host 400, and one in an older
    region answers it with a 307 to the regional host for up to a day after it is created, where
    the SigV4 signature (which covers the host) no longer matches. An emulator's endpoint keeps
    its own host, with the bucket in the path."""
    import boto3
    from urllib.parse import urlsplit

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for region in ("eu-central-1", "af-south-1", "us-east-1"):
        url = Container(settings(), session=boto3.session.Session(region_name=region)).blobs.presigned_url(
            "jobs/j/artifacts/a.bin", 60)
        host = "bucket.s3.amazonaws.com" if region == "us-east-1" else f"bucket.s3.{region}.amazonaws.com"
        assert urlsplit(url).netloc == host, url
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    url = Container(settings(), session=boto3.session.Session(region_name="eu-central-1")).blobs.presigned_url(
        "jobs/j/artifacts/a.bin", 60)
    assert url.startswith("http://127.0.0.1:4566/bucket/jobs/j/artifacts/a.bin?"), url


def test_no_request_is_sent_once_less_than_the_kept_time_is_left(monkeypatch):
    """Within `sending_while`, a request started with less than the time kept left fails unsent, as
    a BotoCoreError every adapter takes for a request that did not answer; before and after, it is
    sent."""
    import boto3
    import pytest
    from botocore.exceptions import BotoCoreError
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    container = Container(settings(), session=boto3.session.Session(region_name="us-east-1"))
    sqs = container.client("sqs")
    left = [30.0]
    with Stubber(sqs) as stub:
        for _ in range(2):
            stub.add_response("get_queue_url", {"QueueUrl": "u"}, {"QueueName": "q"})
        with container.sending_while(lambda: left[0], 30):
            assert sqs.get_queue_url(QueueName="q")["QueueUrl"] == "u"
            left[0] = 29.94
            with pytest.raises(BotoCoreError, match="GetQueueUrl not sent: 29.9 s of the invocation left, "
                                                    "under the 30 s kept to end it"):
                sqs.get_queue_url(QueueName="q")
        assert sqs.get_queue_url(QueueName="q")["QueueUrl"] == "u"
        stub.assert_no_pending_responses()
