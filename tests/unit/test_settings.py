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
