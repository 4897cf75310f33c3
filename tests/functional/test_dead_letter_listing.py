"""The dead-letter listing on moto: SQS has no cursor, so a listing shows up to `limit` letters
and says how many each queue holds in all, so an operator with more letters than a listing
shows knows there are more (docs/operations.md says how to see them)."""
import json

from tests.functional.conftest import token


def operator():
    return {"Authorization": f"Bearer {token(user='root', roles=['operator'])}", "Content-Type": "application/json"}


def _park(aws, url_key: str, count: int) -> None:
    for n in range(count):
        aws["sqs"].send_message(QueueUrl=aws[url_key], MessageBody=json.dumps({"note": f"hand-made {n}"}))


def test_a_listing_shows_up_to_its_limit_and_says_how_many_there_are_in_all(client, aws):
    _park(aws, "dlq_url", 15)
    for _ in range(2):  # the letters shown are left where they are: counted again
        body = client.http.get("/api/system/dlq?priority=normal&limit=5", headers=operator()).json_body
        assert len(body["dead_letters"]["normal"]) == 5
        assert body["total"] == {"normal": 15}


def test_every_queue_is_counted_the_empty_ones_too(client, aws):
    _park(aws, "dlq_high_url", 3)
    body = client.http.get("/api/system/dlq?limit=2", headers=operator()).json_body
    assert {name: len(letters) for name, letters in body["dead_letters"].items()
            if name in ("high", "normal", "low")} == {"high": 2, "normal": 0, "low": 0}
    assert {name: body["total"][name] for name in ("high", "normal", "low")} == {"high": 3, "normal": 0, "low": 0}
    assert set(body["total"]) == set(body["dead_letters"])
