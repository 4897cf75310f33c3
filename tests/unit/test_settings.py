"""Settings: functions deployed without a secret load, and fail clearly only where it is needed."""
from __future__ import annotations

import pytest

from chalicelib.composition import Container
from chalicelib.settings import SettingsError, load_settings

BASE = {"JOBPIPE_TABLE": "jobs", "JOBPIPE_IDEMPOTENCY_TABLE": "idem", "JOBPIPE_QUEUE_URL_HIGH": "h",
        "JOBPIPE_QUEUE_URL_NORMAL": "n", "JOBPIPE_QUEUE_URL_LOW": "l", "JOBPIPE_DLQ_URL": "d"}


def test_a_function_without_the_auth_secret_loads_its_settings():
    settings = load_settings(BASE)
    assert settings.auth_secret is None
    with pytest.raises(SettingsError, match="JOBPIPE_AUTH_SECRET"):
        Container(settings).token_policy


def test_the_api_function_gets_its_token_policy():
    settings = load_settings({**BASE, "JOBPIPE_AUTH_SECRET": "s" * 40, "JOBPIPE_TOKEN_MAX_LIFETIME_S": "600",
                              "JOBPIPE_TOKEN_ISSUER": "https://id.example"})
    policy = Container(settings).token_policy
    assert (policy.secret, policy.max_lifetime_s, policy.issuer, policy.audience) == ("s" * 40, 600, "https://id.example", None)


@pytest.mark.parametrize("secret", ["short", " " + "s" * 40])
def test_a_weak_or_padded_auth_secret_is_refused(secret):
    with pytest.raises(SettingsError, match="JOBPIPE_AUTH_SECRET"):
        load_settings({**BASE, "JOBPIPE_AUTH_SECRET": secret})


def test_the_webhook_needs_both_url_and_secret_where_it_is_delivered():
    with pytest.raises(SettingsError, match="ERP_WEBHOOK_SECRET"):
        load_settings({**BASE, "ERP_WEBHOOK_URL": "https://erp.example/hook"}).require_webhook()
    settings = load_settings({**BASE, "ERP_WEBHOOK_URL": "https://erp.example/hook", "ERP_WEBHOOK_SECRET": "k" * 20})
    assert settings.require_webhook() == ("https://erp.example/hook", "k" * 20)


def test_failed_deliveries_come_back_doubling_from_the_base_up_to_the_cap():
    from chalicelib.defaults import redelivery_wait_s
    assert [redelivery_wait_s(n) for n in (1, 2, 3, 6, 7, 100)] == [30, 60, 120, 900, 900, 900]
    settings = load_settings({**BASE, "JOBPIPE_REDELIVERY_BASE_S": "2", "JOBPIPE_REDELIVERY_MAX_S": "60"})
    waits = [settings.redelivery_wait_s(n) for n in range(1, 8)]
    assert waits == [2, 4, 8, 16, 32, 60, 60]
    with pytest.raises(SettingsError, match="JOBPIPE_REDELIVERY_MAX_S"):
        load_settings({**BASE, "JOBPIPE_REDELIVERY_MAX_S": "0"})


AUTH_SECRET = "Qm4vT9xKp2LwZr7Hs8NcYb3Fj6Gd5Ae1U0"
WEBHOOK_SECRET = "wE8rT2yU6iO0pA4sD9fG3hJ7kL1zX5cV"


def shows_part_of(secret: str, text: str) -> bool:
    """Any 8 characters in a row of `secret` in `text` (pydantic cuts a long input in the middle)."""
    return any(secret[i:i + 8] in text for i in range(len(secret) - 7))


@pytest.mark.parametrize("environ", [
    {"JOBPIPE_AUTH_SECRET": AUTH_SECRET, "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET},  # a function missing its table
    {**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET[:31], "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET},  # one character short
    {**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET + " ", "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET},
    {**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET, "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET, "JOBPIPE_RETENTION_DAYS": "x"},
])
def test_settings_that_fail_never_show_a_secret_in_the_error_or_its_cause(environ):
    """The API logs an unhandled error with its chained causes (logger.exception): pydantic's
    ValidationError showed the input, for a missing variable the whole environment read, so
    both signing keys went to the function's log."""
    import traceback

    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    shown = "".join(traceback.format_exception(caught.value))
    assert "invalid jobpipe settings" in shown
    assert not shows_part_of(AUTH_SECRET, shown) and not shows_part_of(WEBHOOK_SECRET, shown), shown


def test_a_settings_object_shows_no_secret():
    settings = load_settings({**BASE, "JOBPIPE_AUTH_SECRET": AUTH_SECRET, "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET})
    assert not shows_part_of(AUTH_SECRET, repr(settings)) and not shows_part_of(WEBHOOK_SECRET, repr(settings))
    assert settings.auth_secret == AUTH_SECRET and settings.erp_webhook_secret == WEBHOOK_SECRET
