"""Request bodies read as JSON (chalicelib/api/json_body.py): what every parser reads alike, at a
cost that grows with the body, never faster."""
import time

from chalicelib.api.json_body import parse_json

BODY_CHARS = 2 * 1024 * 1024


def _fastest_parse_s(text: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        parse_json(text)
        best = min(best, time.perf_counter() - started)
    return best


def test_a_body_of_digit_runs_just_short_of_the_bound_costs_what_any_body_of_its_size_does():
    """The look for an integer past the largest double (a run of 309 digits) read each run of
    digits again from each of its digits: 2 MB of 308-digit integers took 15 times as long as
    2 MB of short ones (about 3 s for the 5 MB a body may hold, on one core), an amplification
    any tenant could send to the API function at will."""
    near = "[" + ",".join(["1" * 308] * (BODY_CHARS // 309)) + "]"
    short = "[" + ",".join(["1" * 10] * (BODY_CHARS // 11)) + "]"
    assert len(parse_json(near)) == BODY_CHARS // 309  # kept: each is below the largest double
    assert _fastest_parse_s(near) < 4 * _fastest_parse_s(short) + 0.05
