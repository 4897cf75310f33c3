"""tests/support/waiting.py on a fake clock: the reads, the waits between them and what a
timeout says, without sleeping."""
from __future__ import annotations

import pytest

from tests.support.fake_http import FakeTime
from tests.support.waiting import eventually, last_read


class Counter:
    """read(): 1, 2, 3, ... and when each was read (on `fake_time`, which it moves by `takes_s`)."""

    def __init__(self, fake_time: FakeTime, takes_s: float = 0.0) -> None:
        self.time, self.takes_s, self.at = fake_time, takes_s, []

    def __call__(self) -> int:
        self.at.append(self.time.now)
        self.time.now += self.takes_s
        return len(self.at)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def test_returns_at_once_when_the_first_read_holds(fake):
    read = Counter(fake)
    assert eventually(read, lambda n: n == 1, timeout_s=10, clock=fake.clock, sleep=fake.sleep) == 1
    assert read.at == [1000.0] and fake.sleeps == []


def test_returns_the_first_value_that_holds_reading_every_interval(fake):
    read = Counter(fake)
    assert eventually(read, lambda n: n >= 4, timeout_s=10, every_s=0.3, clock=fake.clock, sleep=fake.sleep) == 4
    assert fake.sleeps == [0.3] * 3 and len(read.at) == 4


def test_a_timeout_names_what_was_awaited_the_timeout_and_the_last_value(fake):
    read = Counter(fake)
    with pytest.raises(AssertionError) as failure:
        eventually(read, lambda n: n > 99, timeout_s=1.2, every_s=0.5, what="a hundred reads",
                   clock=fake.clock, sleep=fake.sleep)
    # reads at 0, 0.5 and 1.0 s, then the last wait is cut short to read once more at the deadline
    assert read.at == pytest.approx([1000.0, 1000.5, 1001.0, 1001.2])
    assert fake.sleeps == pytest.approx([0.5, 0.5, 0.2])
    assert str(failure.value) == "waited 1.2 s for a hundred reads; last read: 4"


def test_a_read_slower_than_the_timeout_is_still_made_once(fake):
    read = Counter(fake, takes_s=5)
    with pytest.raises(AssertionError, match="last read: 1$"):
        eventually(read, lambda n: False, timeout_s=1, clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == []


def test_a_long_last_value_is_shown_by_its_start_and_its_end(fake):
    with pytest.raises(AssertionError) as failure:
        eventually(lambda: ["first"] + ["x" * 50] * 200 + ["last"], lambda lines: False, timeout_s=1,
                   clock=fake.clock, sleep=fake.sleep)
    message = str(failure.value)
    assert "'first'" in message and "'last'" in message and " chars) … " in message and len(message) < 2200


def test_last_read_returns_the_last_value_at_the_deadline_without_failing(fake):
    read = Counter(fake)
    assert last_read(read, lambda n: n > 99, timeout_s=2, every_s=0.5, clock=fake.clock, sleep=fake.sleep) == 5
    assert fake.now == pytest.approx(1002.0)


def test_last_read_returns_as_soon_as_the_condition_holds(fake):
    read = Counter(fake)
    assert last_read(read, lambda n: n == 2, timeout_s=2, clock=fake.clock, sleep=fake.sleep) == 2
    assert fake.sleeps == [0.5]


def test_an_interval_of_zero_is_refused(fake):
    with pytest.raises(ValueError, match="busy loop"):
        eventually(lambda: 1, lambda n: False, timeout_s=1, every_s=0, clock=fake.clock, sleep=fake.sleep)
