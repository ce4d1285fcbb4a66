"""The benchmark harness runs every scenario once at a tiny size (``--quick``).

These tests check that each scenario runs and reports sane figures and round
trips. They assert no timing: durations on a test machine mean nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from taskstore_redis._cli import main as _cli
from taskstore_redis._cli.bench._settings import OPERATIONS
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis.backend import TaskKey

LAYOUTS = {"1x1", "1x8", "1x32", "1w x8", "2w x8", "4w x8"}
TARGETS = {
    "store/raw throughput",
    "1x32 vs 1x1 (store)",
    "list page, large vs small owner",
    "memory per minimal task",
}
ENVIRONMENT = {"python", "redis_py", "hiredis", "msgspec", "cpu_count", "loadavg_start"}


def run_bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    assert _cli.main(["bench", "--quick", "--json", str(out), *argv]) == 0
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def check_figures(figures: dict[str, Any]) -> None:
    assert figures["ops"] > 0
    assert figures["throughput"] > 0
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]


def check_every_scenario(run: dict[str, Any], *, baseline: bool) -> None:
    scenarios = {(s["operation"], s["layout"]["label"]): s for s in run["scenarios"]}
    assert set(scenarios) == {(op, layout) for op in OPERATIONS for layout in LAYOUTS}
    for scenario in scenarios.values():
        check_figures(scenario["store"])
        if baseline:
            check_figures(scenario["raw"])
            assert scenario["ratio"] > 0
        else:
            assert scenario["raw"] is None
            assert scenario["ratio"] is None
    scale = run["list_scale"]
    assert scale["sizes"] == [100, 1_000]
    for figures in scale["store"] + (scale["raw"] if baseline else []):
        check_figures(figures)
    assert scale["ratio_p50"] > 0


def check_document(document: dict[str, Any], mode: str) -> dict[str, Any]:
    assert document["schema"] == "taskstore-redis-bench/1"
    assert document["settings"]["quick"] is True
    assert set(document["environment"]) >= ENVIRONMENT
    assert any("--quick" in warning for warning in document["warnings"])
    [run] = document["runs"]
    assert run["mode"] == mode
    assert {target["name"] for target in run["targets"]} == TARGETS
    run_data: dict[str, Any] = run
    return run_data


@pytest.mark.slow
@pytest.mark.redis
def test_quick_bench_on_standalone_redis_reports_every_scenario(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = "benchtest"
    run = check_document(
        run_bench(tmp_path, "--redis-url", redis_url, "--prefix", prefix), "standalone"
    )
    assert run["server"]["redis_version"]
    check_every_scenario(run, baseline=True)

    trips = run["round_trips"]
    assert set(trips) == set(OPERATIONS)
    for operation, sides in trips.items():
        expected = {"HGETALL": 1.0} if operation == "get" else {"EVALSHA": 1.0}
        for side in ("store", "raw"):
            assert sides[side]["round_trips"] == 1.0, (operation, side)
            assert sides[side]["commands"] == expected, (operation, side)
    unseen = run["round_trips_not_remembered"]
    assert unseen["round_trips"] == 2.0
    assert unseen["commands"] == {"EVALSHA": 1.0, "HGETALL": 1.0}

    assert [m["tasks_per_owner"] for m in run["memory"]] == [100, 400]
    for memory in run["memory"]:
        assert memory["tasks"] == 400
        # used_memory is server-wide: on a shared server it need not even grow, so no sign.
        assert isinstance(memory["used_memory_delta_per_task"], int | float)
        assert memory["hash_memory_usage_mean"] > 0
        assert memory["index_memory_usage_per_task"] > 0
        assert memory["key_prefix_length"] == len("taskstore")

    # --quick sizes are too small to judge a target: measured, never judged.
    assert all(target["passed"] is None for target in run["targets"])
    assert all(target["detail"].startswith("not judged") for target in run["targets"])
    output = capsys.readouterr().out
    assert "PASS" not in output and "MISS" not in output
    assert "targets: --quick sizes are too small" in output
    with redis.Redis.from_url(redis_url) as client:
        assert list(client.scan_iter(match=f"{{{prefix}-bench-*")) == []


@pytest.mark.slow
def test_quick_bench_on_the_memory_backend_has_no_baseline_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "bench.png"
    run = check_document(run_bench(tmp_path, "--backend", "memory", "--plot", str(plot)), "memory")
    check_every_scenario(run, baseline=False)
    assert run["round_trips"] is None
    assert run["memory"] is None
    judged = {target["name"]: target["passed"] for target in run["targets"]}
    assert judged["store/raw throughput"] is None
    assert judged["memory per minimal task"] is None
    assert "InMemoryBackend only" in capsys.readouterr().out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    argv = ["bench", "--backend", "memory", "--quick", "--plot", str(tmp_path / "x.png")]
    assert _cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "taskstore-redis: --plot needs matplotlib: pip install 'taskstore-redis[plot]'"
    ]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("bound", [["--ops", "0"], ["--duration", "0"], ["--duration", "-1"]])
def test_bounds_out_of_range_are_refused(
    bound: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli.main(["bench", "--backend", "memory", *bound]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"taskstore-redis: {bound[0]} must be")


@pytest.mark.redis
def test_the_cleanup_pattern_matches_every_key_of_its_prefix_and_no_other(
    redis_url: str, key_prefix: str
) -> None:
    ours, other = KeySchema(key_prefix), KeySchema(key_prefix + "x")
    names = {
        schema: {
            schema.task_key(TaskKey("alice", "t1")),
            schema.index_key("bob"),
            schema.expiry_key("bob"),
            schema.due_key(schema.shards - 1),
        }
        for schema in (ours, other)
    }
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        for schema_names in names.values():
            for name in schema_names:
                client.set(name, "1")
        try:
            assert set(client.scan_iter(match=ours.pattern(), count=1000)) == names[ours]
        finally:
            client.delete(*names[ours], *names[other])
