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


def _park_job_letters(aws, url_key: str, count: int, series: int) -> None:
    """`count` job messages (attempt 1) on the queue at `url_key`, as SQS parks them; the job
    ids of one `series` are unlike any other's."""
    for n in range(count):
        aws["sqs"].send_message(QueueUrl=aws[url_key], MessageBody=json.dumps(
            {"job_id": f"00000000-0000-0000-0000-0000000{series:03d}{n:02d}", "attempt": 1}))


def test_a_listing_shows_up_to_its_limit_and_says_how_many_there_are_in_all(client, aws):
    _park(aws, "dlq_url", 15)
    for _ in range(2):  # the letters shown are left where they are: counted again
        body = client.http.get("/api/system/dlq?priority=normal&limit=5", headers=operator()).json_body
        assert len(body["dead_letters"]["normal"]) == 5
        assert body["total"] == {"normal": 15}


def test_a_listed_letter_says_when_it_was_sent_to_its_queue(client, aws):
    """`sent_at` is the time SQS took the letter (its SentTimestamp), in UTC as every time the
    API answers: how long a letter has waited is what an operator reads first."""
    from datetime import datetime, timedelta, timezone

    from chalicelib.domain.job import parse_time

    before = datetime.now(timezone.utc).replace(microsecond=0)
    _park(aws, "dlq_url", 1)
    after = datetime.now(timezone.utc) + timedelta(seconds=1)
    (letter,) = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"][
        "normal"]
    assert letter["sent_at"].endswith("Z") and before <= parse_time(letter["sent_at"]) <= after, letter


def test_a_listing_shows_ten_unless_asked_and_takes_a_limit_from_1_to_100(client, aws):
    """operations.md: a listing shows DEAD_LETTER_BATCH letters a queue unless `limit` asks for
    up to MAX_DEAD_LETTER_BATCH; a limit outside 1-100 is refused 400 `invalid_request` naming
    it in the details, not a listing of nothing or of more than SQS's ten a call allows in ten calls."""
    from chalicelib.defaults import DEAD_LETTER_BATCH, MAX_DEAD_LETTER_BATCH

    _park(aws, "dlq_url", MAX_DEAD_LETTER_BATCH + 5)
    shown = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body
    assert len(shown["dead_letters"]["normal"]) == DEAD_LETTER_BATCH
    widest = client.http.get(f"/api/system/dlq?priority=normal&limit={MAX_DEAD_LETTER_BATCH}", headers=operator())
    assert len(widest.json_body["dead_letters"]["normal"]) == MAX_DEAD_LETTER_BATCH
    assert len(client.http.get("/api/system/dlq?priority=normal&limit=1", headers=operator())
               .json_body["dead_letters"]["normal"]) == 1
    for limit in (0, MAX_DEAD_LETTER_BATCH + 1):
        refused = client.http.get(f"/api/system/dlq?priority=normal&limit={limit}", headers=operator())
        error = refused.json_body["error"]
        assert (refused.status_code, error["code"]) == (400, "invalid_request"), limit
        assert [problem["loc"] for problem in error["details"]] == [["limit"]], error


def test_every_queue_is_counted_the_empty_ones_too(client, aws):
    _park(aws, "dlq_high_url", 3)
    body = client.http.get("/api/system/dlq?limit=2", headers=operator()).json_body
    assert {name: len(letters) for name, letters in body["dead_letters"].items()
            if name in ("high", "normal", "low")} == {"high": 2, "normal": 0, "low": 0}
    assert {name: body["total"][name] for name in ("high", "normal", "low")} == {"high": 3, "normal": 0, "low": 0}
    assert set(body["total"]) == set(body["dead_letters"])


def test_a_listing_too_large_for_one_answer_shows_the_start_of_each_large_body(client, aws):
    """Forty letters of 200 KB each (SQS takes 256 KiB) would make an 8 MB answer, which API
    Gateway cannot carry (502): each large body is shown as the start of its text, marked."""
    from chalicelib.dead_letters import LETTERS_BYTES
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes

    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"note": "small"}))
    big = {"note": "é" * 100_000}  # 200 KB as UTF-8, 600 KB as the answer's \\u00e9 escapes
    for _ in range(39):
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(big, ensure_ascii=False))
    answer = client.http.get("/api/system/dlq?priority=normal&limit=40", headers=operator())
    assert answer.status_code == 200 and answer_bytes(answer.json_body) <= MAX_ANSWER_BYTES
    letters = answer.json_body["dead_letters"]["normal"]
    assert len(letters) == 40 and answer.json_body["total"] == {"normal": 40}
    small = [letter for letter in letters if not letter["body_cut"]]
    assert [letter["body"] for letter in small] == [{"note": "small"}] and small[0]["body_bytes"] is None
    whole = json.dumps(big, separators=(",", ":"), ensure_ascii=False)
    share = LETTERS_BYTES // len(letters)  # each cut letter, its own fields too, takes at most its share
    for letter in letters:
        if letter["body_cut"]:
            assert letter["body_bytes"] == len(whole.encode()) and answer_bytes(letter) <= share
            assert 1_000 < len(letter["body"]["raw"]) < len(whole) and whole.startswith(letter["body"]["raw"])


def test_a_listing_that_fits_shows_every_body_whole(client, aws):
    big = {"note": "x" * 200_000}
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(big))
    letters = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"]["normal"]
    assert [(letter["body"], letter["body_cut"]) for letter in letters] == [(big, False)]


def test_a_listing_that_fits_shows_a_body_past_an_equal_share_whole(client, aws):
    """Bodies are cut only when the listing as a whole would not fit one answer: a hundred
    letters that fit show their one large body whole, though it takes more than a hundredth of
    what the letters may take together."""
    big = {"note": "x" * 200_000}
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(big))
    for batch in range(10):
        aws["sqs"].send_message_batch(QueueUrl=aws["dlq_url"], Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"note": f"small {batch}-{n}"})} for n in range(10 if batch else 9)])
    letters = client.http.get("/api/system/dlq?priority=normal&limit=100",
                              headers=operator()).json_body["dead_letters"]["normal"]
    assert len(letters) == 100 and not any(letter["body_cut"] for letter in letters)
    assert big in [letter["body"] for letter in letters]


def test_a_cut_body_whose_json_held_a_lone_surrogate_is_shown_not_a_500(client, aws):
    """A letter's JSON text may hold `"\\ud800"` (any JSON encoder writes one from a broken
    string): read back it is a lone surrogate, and measuring the cut body's UTF-8 raised
    UnicodeEncodeError, answering the whole listing 500."""
    from chalicelib.defaults import MAX_ANSWER_BYTES
    from chalicelib.domain.job import answer_bytes

    body = '{"note": "\\ud800' + "x" * 250_000 + '"}'
    for _ in range(30):
        aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=body)
    answer = client.http.get("/api/system/dlq?priority=normal&limit=30", headers=operator())
    assert answer.status_code == 200 and answer_bytes(answer.json_body) <= MAX_ANSWER_BYTES
    letters = answer.json_body["dead_letters"]["normal"]
    assert len(letters) == 30 and all(letter["body_cut"] for letter in letters)
    assert all(letter["body"]["raw"].startswith('{"note":"\ud800xxx') for letter in letters)


def test_a_letter_whose_redrive_send_failed_is_listed_again_at_once(client, aws, monkeypatch):
    """The redrive received the letter (hidden for 30 s) and SQS refused to send it on: it
    stayed counted in the listing's `total` but was missing from its letters for 30 s."""
    from chalicelib.composition import container
    job_id = "00000000-0000-0000-0000-000000000601"
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"job_id": job_id, "attempt": 1}))
    sqs = container().queue_operations._sqs
    monkeypatch.setattr(sqs, "send_message_batch", lambda QueueUrl, Entries: {"Successful": [], "Failed": [
        {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"} for e in Entries]})
    moved = client.http.post("/api/system/dlq/redrive?priority=normal", headers=operator()).json_body
    assert moved["redriven"]["normal"] == {"moved": 0, "failed": 1}, moved
    listing = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body
    assert listing["total"] == {"normal": 1} and len(listing["dead_letters"]["normal"]) == 1


def test_letters_a_redrive_could_not_send_on_are_listed_again_at_once_and_those_sent_stay_hidden(client, aws,
                                                                                                   monkeypatch):
    """The queue a redrive sends to does not answer (a timeout, a refusal of the whole call):
    the redrive is 503, and the letters it received and did not send were hidden for 30 s,
    missing from the listing that counts them. They are shown again at once; a letter sent on
    whose delete did not answer stays hidden, or a second redrive would send it twice."""
    from chalicelib.composition import container
    from tests.functional.conftest import TimingOut, receive_all

    _park_job_letters(aws, "dlq_url", 12, 7)  # two sends of ten and two
    operations = container().queue_operations
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(operations._sqs, "send_message_batch"))
        refused = client.http.post("/api/system/dlq/redrive?priority=normal&limit=12", headers=operator())
    assert refused.status_code == 503 and refused.json_body["error"]["code"] == "dlq_unavailable", refused.body
    listing = client.http.get("/api/system/dlq?priority=normal&limit=100", headers=operator()).json_body
    assert listing["total"] == {"normal": 12} and len(listing["dead_letters"]["normal"]) == 12

    real = operations._sqs
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", TimingOut(real, "delete_message_batch"))
        refused = client.http.post("/api/system/dlq/redrive?priority=normal&limit=12", headers=operator())
    assert refused.status_code == 503, refused.body
    sent = receive_all(aws, "jobs_url")
    shown = client.http.get("/api/system/dlq?priority=normal&limit=100", headers=operator()).json_body
    assert len(sent) == 10 and len(shown["dead_letters"]["normal"]) == 2  # the ten sent stay hidden
    assert {json.loads(m["Body"])["job_id"] for m in sent}.isdisjoint(
        letter["body"]["job_id"] for letter in shown["dead_letters"]["normal"])


def test_an_operator_deletes_one_letter_by_the_id_its_listing_shows(client, aws):
    """A foreign body on a jobs DLQ: no redrive moves it and nothing will take it, and it kept the
    queue's alarm up for its 14 days unless deleted in the SQS console. DELETE takes it by the
    `message_id` the listing shows, leaving the others; asked again, or for an id no letter has,
    404 letter_not_found; a queue must be named, and only an operator may."""
    _park(aws, "dlq_url", 3)
    letters = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"]
    gone, *kept = [letter["message_id"] for letter in letters["normal"]]
    response = client.http.delete(f"/api/system/dlq/letters/{gone}?priority=normal", headers=operator())
    assert response.status_code == 200, response.body
    assert response.json_body == {"deleted": gone, "queue": "normal"}
    left = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body
    assert sorted(letter["message_id"] for letter in left["dead_letters"]["normal"]) == sorted(kept)
    for message_id, query in ((gone, "queue=normal"), ("00000000-0000-0000-0000-000000000000", "priority=normal"),
                              ("not$an$id", "priority=normal")):
        response = client.http.delete(f"/api/system/dlq/letters/{message_id}?{query}", headers=operator())
        assert response.status_code == 404 and response.json_body["error"]["code"] == "letter_not_found"
    for query in ("", "?queue=nowhere", "?priority=high&queue=normal"):
        response = client.http.delete(f"/api/system/dlq/letters/{kept[0]}{query}", headers=operator())
        assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_request", query
    tenant = {"Authorization": f"Bearer {token()}"}
    assert client.http.delete(f"/api/system/dlq/letters/{kept[0]}?priority=normal", headers=tenant).status_code == 403
    assert len(client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"]["normal"]) == 2


def test_the_stream_failure_queues_descriptions_are_not_an_operators_to_delete(client, aws, monkeypatch):
    """A failed batch's description is the reconciler's, removed once replayed: 409
    not_redrivable, and it stays. A parked record (whose events the operator gives up) and a
    hand-made body no pass would ever remove are deleted."""
    from chalicelib import composition
    from tests.support.stream import on_failure_record

    url = aws["sqs"].create_queue(QueueName="stream-failures")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_STREAM_FAILURE_QUEUE_URL", url)
    composition.use(None)
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/stream/2026-01-01T00:00:00.000"
    described = aws["sqs"].send_message(QueueUrl=url, MessageBody=on_failure_record(
        arn, "shardId-00000001700000000000-00000000", "100", "200", 2))["MessageId"]
    hand_made = aws["sqs"].send_message(QueueUrl=url, MessageBody=json.dumps({"note": "hand-made"}))["MessageId"]
    parked = aws["sqs"].send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": "j1", "parked_stream_record": {
        "dynamodb": {"SequenceNumber": "300", "Keys": {}}}}))["MessageId"]
    refused = client.http.delete(f"/api/system/dlq/letters/{described}?queue=stream_failure", headers=operator())
    assert refused.status_code == 409 and refused.json_body["error"]["code"] == "not_redrivable"
    assert "describes a failed stream batch" in refused.json_body["error"]["message"]
    for message_id in (hand_made, parked):
        response = client.http.delete(f"/api/system/dlq/letters/{message_id}?queue=stream_failure", headers=operator())
        assert response.status_code == 200, response.body
    left = client.http.get("/api/system/dlq?queue=stream_failure", headers=operator()).json_body
    assert [letter["message_id"] for letter in left["dead_letters"]["stream_failure"]] == [described]


def test_the_letters_are_listed_while_the_jobs_table_does_not_answer(client, aws, monkeypatch):
    """Each letter is shown with its job's record, read from the jobs table: that table down is
    when an operator most needs the letters, and the whole listing answered 503. The letters are
    shown, each `job` null, and `jobs_unavailable` says their records were not read."""
    from chalicelib.composition import container
    from tests.functional.conftest import TimingOut
    from tests.functional.conftest import submit_job

    job = submit_job(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps({"job_id": job["id"], "attempt": 1}))
    shown = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body
    assert shown["dead_letters"]["normal"][0]["job"]["id"] == job["id"] and "jobs_unavailable" not in shown
    store = container().store
    for path in ("/api/system/dlq?priority=normal", "/api/system/dlq"):
        with monkeypatch.context() as patched:
            patched.setattr(store, "_ddb", TimingOut(store._ddb, "batch_get_item"))
            answer = client.http.get(path, headers=operator())
        assert answer.status_code == 200, (path, answer.body)
        (letter,) = answer.json_body["dead_letters"]["normal"]
        assert letter["body"] == {"job_id": job["id"], "attempt": 1} and letter["job"] is None
        assert answer.json_body["jobs_unavailable"] == {"code": "store_unavailable", "message": "could not read jobs"}
        assert answer.json_body["total"]["normal"] == 1
    declared = client.http.get("/openapi.json").json_body["paths"]["/api/system/dlq"]["get"]["responses"]["200"]
    assert "jobs_unavailable" in declared["content"]["application/json"]["schema"]["properties"]


class _LaterCallsTimeOut:
    """An SQS client whose `method` answers its first `answered` calls, then times out."""

    def __init__(self, client, method: str, answered: int):
        self._client, self._method, self._left = client, method, answered

    def __getattr__(self, name):
        if name != self._method:
            return getattr(self._client, name)
        if self._left == 0:
            from tests.functional.conftest import times_out
            return times_out
        self._left -= 1
        return getattr(self._client, name)


def test_a_redrive_that_stops_midway_says_which_letters_it_moved(client, aws, monkeypatch):
    """A redrive moves ten letters at a time; SQS stopping after the first ten moved answered
    503 and nothing more: the operator could not tell that ten had gone back to the queue. The
    error's details name the queue, how many moved and their message ids (the listing's), and
    those sent on whose delete did not answer (back on the DLQ in 30 s, a copy on the queue);
    a redrive of every queue names them the same way under `unavailable`."""
    from chalicelib.composition import container
    from tests.functional.conftest import receive_all

    _park_job_letters(aws, "dlq_url", 15, 8)
    listing = client.http.get("/api/system/dlq?priority=normal&limit=100", headers=operator()).json_body
    job_of = {letter["message_id"]: letter["body"]["job_id"] for letter in listing["dead_letters"]["normal"]}
    operations = container().queue_operations
    with monkeypatch.context() as patched:
        patched.setattr(operations, "_sqs", _LaterCallsTimeOut(operations._sqs, "send_message_batch", 1))
        refused = client.http.post("/api/system/dlq/redrive?priority=normal&limit=100", headers=operator())
    assert refused.status_code == 503 and refused.json_body["error"]["code"] == "dlq_unavailable", refused.body
    details = refused.json_body["error"]["details"]
    sent = {json.loads(m["Body"])["job_id"] for m in receive_all(aws, "jobs_url")}
    assert details["queue"] == "normal" and details["moved"] == 10 == len(sent) and details["sent_ids"] == []
    assert {job_of[i] for i in details["moved_ids"]} == sent
    shown = client.http.get("/api/system/dlq?priority=normal&limit=100", headers=operator()).json_body
    assert {letter["body"]["job_id"] for letter in shown["dead_letters"]["normal"]} == set(job_of.values()) - sent

    with monkeypatch.context() as patched:  # the delete does not answer: the five left were sent on
        patched.setattr(operations, "_sqs", _LaterCallsTimeOut(operations._sqs, "delete_message_batch", 0))
        answer = client.http.post("/api/system/dlq/redrive?limit=100", headers=operator())
    assert answer.status_code == 200, answer.body
    said = answer.json_body["unavailable"]["normal"]
    assert said["code"] == "dlq_unavailable" and said["details"]["moved"] == 0 and said["details"]["moved_ids"] == []
    assert {job_of[i] for i in said["details"]["sent_ids"]} == set(job_of.values()) - sent


def test_a_redrive_of_every_queue_that_stopped_on_each_says_what_each_sent_on(client, aws, monkeypatch):
    """No queue's redrive went through, but each had sent its letter on before its delete did not
    answer: a 503 naming only the first queue's would leave the others' copies unsaid. The
    answer is 200, each queue under `unavailable` with its details."""
    from chalicelib.composition import container

    for key in ("dlq_high_url", "dlq_url", "dlq_low_url"):
        aws["sqs"].send_message(QueueUrl=aws[key], MessageBody=json.dumps(
            {"job_id": "00000000-0000-0000-0000-000000000901", "attempt": 1}))
    operations = container().queue_operations
    monkeypatch.setattr(operations, "_sqs", _LaterCallsTimeOut(operations._sqs, "delete_message_batch", 0))
    answer = client.http.post("/api/system/dlq/redrive", headers=operator())
    assert answer.status_code == 200, answer.body
    assert answer.json_body["redriven"] == {}
    assert {name: (said["details"]["moved"], len(said["details"]["sent_ids"]))
            for name, said in answer.json_body["unavailable"].items()} == {name: (0, 1) for name in ("high", "normal", "low")}


def test_a_letter_sqs_moved_after_its_receives_says_so_and_where_it_came_from(client, aws, monkeypatch):
    """A job message whose worker kept crashing is moved to the DLQ by the queue's redrive policy
    (10 receives), with no reason of its own: the listing says SQS moved it, from which queue,
    how often it was received and since when, from what SQS keeps of it. Moto moves it but does
    not name its source queue as AWS (and the local emulator) do: the test adds that attribute."""
    from chalicelib.composition import container
    job_id = "00000000-0000-0000-0000-000000000611"
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody=json.dumps({"job_id": job_id, "attempt": 1}))
    for _ in range(11):  # ten receives never deleted; the eleventh finds it moved
        aws["sqs"].receive_message(QueueUrl=aws["jobs_url"], VisibilityTimeout=0)
    source_arn = aws["sqs"].get_queue_attributes(QueueUrl=aws["jobs_url"], AttributeNames=["QueueArn"])["Attributes"]
    sqs = container().queue_operations._sqs
    receive = sqs.receive_message

    def as_aws_receives(**request):
        answer = receive(**request)
        assert "DeadLetterQueueSourceArn" in request["MessageSystemAttributeNames"]
        for message in answer.get("Messages", []):
            message["Attributes"]["DeadLetterQueueSourceArn"] = source_arn["QueueArn"]
        return answer

    monkeypatch.setattr(sqs, "receive_message", as_aws_receives)
    letters = client.http.get("/api/system/dlq?priority=normal", headers=operator()).json_body["dead_letters"]["normal"]
    assert [letter["body"]["job_id"] for letter in letters] == [job_id]
    reason = letters[0]["reason"]
    assert reason.startswith("moved here by SQS from jobs-normal after the receives its redrive policy allows"), reason
    assert "received 11 times in all" in reason and "first received 20" in reason, reason


def test_an_id_no_letter_can_have_is_not_found_without_a_look_at_the_queue(client, aws, monkeypatch):
    """SQS names a message by a UUID: an id of anything but letters, digits and dashes, or of
    more than 100, names no letter. It is answered 404 saying what a letter's id is (the id
    quoted, cut to 100 characters), the queue not read: so while SQS does not answer. An id of
    that form, upper case included, is looked for on the queue."""
    from chalicelib.composition import container
    from tests.functional.conftest import TimingOut

    operations = container().queue_operations
    monkeypatch.setattr(operations, "_sqs", TimingOut(operations._sqs, "receive_message"))

    def delete(message_id):
        return client.http.delete(f"/api/system/dlq/letters/{message_id}?priority=normal", headers=operator())

    for message_id in ("a" * 101, "x" * 300, "a_b", "a.b", "abc$"):
        refused = delete(message_id)
        assert refused.status_code == 404, (message_id, refused.body)
        assert refused.json_body["error"] == {"code": "letter_not_found", "message": (
            f"no letter {message_id[:100]!r}: a letter's id is its listing's message_id")}, message_id
    for message_id in ("a", "A" * 100, "0A1B2C3D-0000-4000-8000-00000000000F"):
        looked = delete(message_id)
        assert (looked.status_code, looked.json_body["error"]["code"]) == (503, "dlq_unavailable"), message_id


def test_a_delete_names_its_letters_queue_and_takes_nothing_else(client, aws):
    """A letter is deleted from the queue the request names, never looked for on every one; a
    listing's `limit` means nothing to a delete of one letter: both refused 400."""
    message_id = "00000000-0000-0000-0000-000000000000"
    for query, said in (("", "name the letter's dead-letter queue"), ("?priority=normal&limit=5", "limit")):
        refused = client.http.delete(f"/api/system/dlq/letters/{message_id}{query}", headers=operator())
        assert (refused.status_code, refused.json_body["error"]["code"]) == (400, "invalid_request"), query
        assert said in json.dumps(refused.json_body["error"]), refused.body


def test_a_redrive_of_every_queue_that_stopped_after_moving_letters_says_so(client, aws, monkeypatch):
    """Every queue's redrive stopped, one after its first ten letters moved (their deletes
    made: none left sent on and owed): those ten are back on the queue, so the answer is 200
    naming each queue under `unavailable` with what it moved, not a 503 that says nothing of
    them."""
    from chalicelib.composition import container

    for key in ("dlq_high_url", "dlq_url", "dlq_low_url"):
        _park_job_letters(aws, key, 11, 9)
    operations = container().queue_operations
    monkeypatch.setattr(operations, "_sqs", _LaterCallsTimeOut(operations._sqs, "send_message_batch", 1))
    answer = client.http.post("/api/system/dlq/redrive?limit=100", headers=operator())
    assert answer.status_code == 200, answer.body
    assert answer.json_body["redriven"] == {}
    said = answer.json_body["unavailable"]
    assert sorted((s["details"]["moved"], len(s["details"]["moved_ids"]), s["details"]["sent_ids"])
                  for s in said.values()) == [(0, 0, []), (0, 0, []), (10, 10, [])], said


def test_a_redrive_moves_up_to_its_limit_from_the_queue_named_or_from_each(client, aws):
    """A redrive that names a queue, by priority or by name, moves that queue's letters alone;
    one that names none moves up to `limit` from each queue."""
    for key in ("dlq_high_url", "dlq_url"):
        _park_job_letters(aws, key, 3, 10)

    def redrive(query):
        answer = client.http.post(f"/api/system/dlq/redrive?{query}", headers=operator())
        assert answer.status_code == 200 and "unavailable" not in answer.json_body, answer.body
        return answer.json_body["redriven"]

    assert redrive("priority=normal&limit=2") == {"normal": {"moved": 2, "failed": 0}}
    assert redrive("queue=high&limit=1") == {"high": {"moved": 1, "failed": 0}}
    every = redrive("limit=1")
    assert {name: every[name] for name in ("high", "normal", "low")} == {
        "high": {"moved": 1, "failed": 0}, "normal": {"moved": 1, "failed": 0}, "low": {"moved": 0, "failed": 0}}
    total = client.http.get("/api/system/dlq", headers=operator()).json_body["total"]
    assert {name: total[name] for name in ("high", "normal", "low")} == {"high": 1, "normal": 0, "low": 0}
