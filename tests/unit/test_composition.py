"""The composition root builds one client per AWS service and shares it between adapters."""
from chalicelib.composition import Container
from chalicelib.settings import Settings


class Events:
    def __init__(self) -> None:
        self.registered: list[str] = []

    def register(self, name, handler) -> None:
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
    assert client.meta.events.registered == ["before-send"]


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
