"""ReconcilerLog: each pass's counts added to the totals, the last pass kept as it was."""


def test_a_new_log_has_no_pass(adapters):
    assert adapters.reconciler_log.summary() == {"last_pass": None, "totals": {}}


def test_passes_add_to_the_totals_and_the_last_one_is_kept(adapters):
    log = adapters.reconciler_log
    log.record("2026-01-01T12:00:00.000Z", {"resent": 2, "expired": 1})
    log.record("2026-01-01T12:01:00.000Z", {"resent": 3, "released": 0})
    assert log.summary() == {
        "last_pass": {"started_at": "2026-01-01T12:01:00.000Z", "counts": {"resent": 3, "released": 0}},
        "totals": {"passes": 2, "resent": 5, "expired": 1, "released": 0},
    }
