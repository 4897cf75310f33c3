"""The fault walk's tier: the functional tier's fixtures (moto with the fidelity fixes every
functional test runs under, the app, its test client), its cases spread over every worker one
by one (the functional tier keeps a file's tests together, which would run the walk's five
hundred on one)."""
from tests.functional.conftest import (  # noqa: F401 - fixtures, the autouse ones too
    app,
    aws,
    botocore_models_read_once,
    client,
    moto_batch_writes_over_25_are_refused,
    moto_transactions_keep_what_they_touch,
    moto_updates_too_large_are_refused_whole,
)
