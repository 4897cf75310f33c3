"""The cold-burst measurement's pure parts: walking a process group in /proc, the latency summary."""
from bench.cold_burst import PeakSampler, group_usage, latency_summary


def fake_proc(root, processes):
    """processes: (pid, command, state, pgrp, rss_kb or None for no VmRSS line)."""
    for pid, command, state, pgrp, rss_kb in processes:
        entry = root / str(pid)
        entry.mkdir()
        (entry / "stat").write_text(f"{pid} ({command}) {state} 1 {pgrp} {pgrp} 0 -1 4194560 0 0\n")
        vm = f"VmRSS:\t{rss_kb} kB\n" if rss_kb is not None else ""
        (entry / "status").write_text(f"Name:\t{command}\nState:\t{state}\n{vm}Threads:\t1\n")
    (root / "self").mkdir()
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    return root


def test_group_usage_sums_the_live_members_of_the_group_only(tmp_path):
    proc = fake_proc(tmp_path, [
        (100, "ministack", "S", 100, 200_000),
        (101, "python3 (worker) x", "R", 100, 90_000),  # a command with spaces and parentheses
        (102, "python3", "Z", 100, None),  # a zombie holds no memory and is not counted
        (103, "kernel thread", "S", 100, None),  # no VmRSS line: counted, 0 bytes
        (200, "other", "S", 200, 500_000),
    ])
    assert group_usage(100, proc) == (3, (200_000 + 90_000) * 1024)
    assert group_usage(300, proc) == (0, 0)


def test_a_process_that_ends_while_read_is_skipped(tmp_path):
    proc = fake_proc(tmp_path, [(100, "ministack", "S", 100, 1000)])
    (proc / "101").mkdir()  # its stat vanished
    assert group_usage(100, proc) == (1, 1000 * 1024)


def test_the_sampler_keeps_the_peaks(tmp_path):
    proc = fake_proc(tmp_path, [(100, "ministack", "S", 100, 1000), (101, "worker", "S", 100, 3000)])
    sampler = PeakSampler(100, proc=proc)
    sampler.sample()
    for entry in ("101",):
        for name in ("stat", "status"):
            (proc / entry / name).unlink()
    sampler.sample()
    assert (sampler.peak_processes, sampler.peak_rss, sampler.samples) == (2, 4000 * 1024, 2)


def test_latency_summary():
    assert latency_summary([0.4, 12.0, 1.0, 2.0], limit_s=10) == {
        "median_s": 1.5, "max_s": 12.0, "min_s": 0.4, "within_limit": 3}
    assert latency_summary([], limit_s=10)["median_s"] is None


def test_a_report_lines_duration():
    from bench.stack import report_duration_ms

    line = ("REPORT RequestId: 1f\tDuration: 41.5 ms\tBilled Duration: 42 ms\tMemory Size: 512 MB\t"
            "Max Memory Used: 80 MB")
    assert report_duration_ms(line) == 41.5
    assert report_duration_ms("REPORT RequestId: 1f") is None


def test_group_cpu_parts_the_emulator_from_the_function_processes(tmp_path):
    from bench.throughput import group_cpu_s
    import os

    tick = os.sysconf("SC_CLK_TCK")
    for pid, command, pgrp, times in [(100, "ministack", 100, (2 * tick, tick, tick, 0)),
                                      (101, "python3 (worker) x", 100, (tick, tick, 0, 0)),
                                      (200, "other", 200, (9 * tick, 0, 0, 0))]:
        entry = tmp_path / str(pid)
        entry.mkdir()
        utime, stime, cutime, cstime = times
        (entry / "stat").write_text(
            f"{pid} ({command}) S 1 {pgrp} {pgrp} 0 -1 4194560 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0\n")
    (tmp_path / "self").mkdir()
    # the leader's own time is the emulator's; its reaped children's and the members' the functions'
    assert group_cpu_s(100, 100, tmp_path) == {"emulator": 3.0, "functions": 3.0}
