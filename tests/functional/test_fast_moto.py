"""tests/support/fast_moto.py keeps moto's answers: a refused transaction leaves nothing of
itself, as moto's own deep-copy rollback did, and a later one lands."""
from __future__ import annotations

import pytest


def key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_a_refused_transaction_leaves_nothing_it_wrote_before_its_refusal(aws):
    ddb = aws["ddb"]
    ddb.put_item(TableName="jobs", Item={**key("A", "1"), "v": {"N": "1"}})
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "jobs", "Item": key("B", "1")}},
            {"Update": {"TableName": "jobs", "Key": key("A", "1"), "UpdateExpression": "SET v = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}}}},
            {"ConditionCheck": {"TableName": "jobs", "Key": key("A", "2"), "ConditionExpression": "attribute_exists(pk)"}},
        ])
    assert [i["v"] for i in ddb.scan(TableName="jobs")["Items"]] == [{"N": "1"}]
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "jobs", "Item": key("B", "1")}}])
    assert len(ddb.scan(TableName="jobs")["Items"]) == 2


def test_a_batch_write_dynamodb_would_refuse_is_refused_and_writes_nothing(aws):
    """tests/support/moto_fidelity.py: DynamoDB takes at most 25 requests in a BatchWriteItem;
    moto took any number, so a caller that forgot to split its writes passed."""
    ddb = aws["ddb"]

    def puts(n: int) -> list[dict]:
        return [{"PutRequest": {"Item": key("P", str(i))}} for i in range(n)]

    with pytest.raises(ddb.exceptions.ClientError, match="ValidationException"):
        ddb.batch_write_item(RequestItems={"jobs": puts(26)})
    assert ddb.scan(TableName="jobs")["Items"] == []
    ddb.batch_write_item(RequestItems={"jobs": puts(25)})
    assert len(ddb.scan(TableName="jobs")["Items"]) == 25
