"""Priorities, deployed: a flood of low-priority jobs does not hold up a high-priority one."""
from concurrent.futures import ThreadPoolExecutor

LOW_FLOOD = 16


def steps(priority: str, steps: int, step_ms: int) -> dict:
    return {"type": "demo.steps", "priority": priority, "payload": {"steps": steps, "step_ms": step_ms}}


def test_high_priority_job_overtakes_a_flood_of_low_priority_jobs(stack):
    # Warm both worker functions so the comparison is not about cold starts.
    warm = [stack.submit(steps(p, 1, 0))["id"] for p in ("high", "low")]
    assert all(stack.wait_terminal(i)["status"] == "completed" for i in warm)

    with ThreadPoolExecutor(max_workers=4) as pool:
        low = list(pool.map(lambda _: stack.submit(steps("low", 2, 500))["id"], range(LOW_FLOOD)))
    high = stack.submit(steps("high", 1, 0))
    assert high["priority"] == "high"

    done_high = stack.wait_terminal(high["id"], timeout_s=60)
    done_low = [stack.wait_terminal(i, timeout_s=120) for i in low]
    assert done_high["status"] == "completed"
    assert all(j["status"] == "completed" and j["priority"] == "low" for j in done_low)

    # Timestamps come from the job records (ISO-8601 UTC, comparable as strings). The low jobs
    # still waiting when the high job was submitted are its competition: apart from the two
    # the low queue's slots may start meanwhile, all of them start after it finished.
    waiting = [j for j in done_low if j["started_at"] > done_high["created_at"]]
    assert len(waiting) >= 4, (done_high["created_at"], sorted(j["started_at"] for j in done_low))
    overtaken = [j for j in waiting if j["started_at"] > done_high["finished_at"]]
    assert len(overtaken) >= len(waiting) - 2, (
        done_high["created_at"], done_high["finished_at"], sorted(j["started_at"] for j in waiting)
    )
    # The low queue's concurrency limit (2) holds: never more than two low jobs at once.
    events = sorted([(j["started_at"], 1) for j in done_low] + [(j["finished_at"], -1) for j in done_low])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2
