"""The MCP task-call benchmark harness (benchmarks/mcp_tasks/run.py).

The pure parts (percentiles, shares, the summary and the targets) are checked on made-up
records. The harness itself runs once, tiny, end to end against fastmcp-tasks (the
benchmark's FastMCP 4 server over streamable HTTP, Docket on a throwaway Redis, FastMCP's
client in a driver process) in both setups: every call must come back with the right
result and the JSON must carry every field. No figure is judged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.scripts import load_script

RUN_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "mcp_tasks" / "run.py"


run = load_script(RUN_PY, "mcp_tasks_run")


def record(side: str, setup: str = "A", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "side": side,
        "setup": setup,
        "ok": True,
        "error": None,
        "throughput": 100.0,
        "latency_ms": {"p50": 50.0, "p95": 80.0, "p99": 90.0, "mean": 55.0, "max": 99.0},
        "cpu_ms_per_call": {"servers": 5.0, "workers": None, "redis": 1.0, "total": 6.0},
        "completed": 2000,
        "redis_commands": 40_000,
    }
    base.update(overrides)
    return base


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert run.percentile(values, 0.5) == 50.0
    assert run.percentile(values, 0.99) == 99.0
    assert run.percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        run.percentile([], 0.5)


def test_split_and_worker_tasks_keep_the_totals() -> None:
    assert run.split(50, 2) == [25, 25]
    assert run.split(7, 3) == [3, 2, 2]
    assert run.worker_tasks(run.SETUPS["A"], 50, None) == 50
    assert run.worker_tasks(run.SETUPS["B"], 50, None) == 25
    assert run.worker_tasks(run.SETUPS["B"], 50, 8) == 8


def test_parse_names_rejects_unknown_names() -> None:
    assert run.parse_names("B, A,B", ["A", "B"], "setup") == ["B", "A"]
    with pytest.raises(ValueError, match="unknown setup 'C'"):
        run.parse_names("A,C", ["A", "B"], "setup")


def test_summary_and_targets_take_medians_of_the_ok_runs() -> None:
    runs = [
        record("fastmcp-tasks", throughput=100.0),
        record("fastmcp-tasks", throughput=300.0),
        record("fastmcp-tasks", throughput=200.0),
        record("taskstore", throughput=500.0, latency_ms={"p50": 20.0, "p99": 30.0}),
        record("taskstore", ok=False, error="server exited", throughput=None),
        record("fastmcp-tasks", "B"),
    ]
    rows = run.summarize(runs)
    assert [(r["setup"], r["side"]) for r in rows] == [
        ("A", "fastmcp-tasks"),
        ("A", "taskstore"),
        ("B", "fastmcp-tasks"),
    ]
    theirs, ours, _ = rows
    assert theirs["throughput"] == {"median": 200.0, "min": 100.0, "max": 300.0}
    assert theirs["redis_commands_per_call"] == {"median": 20.0, "min": 20.0, "max": 20.0}
    assert (ours["runs"], ours["ok_runs"], ours["errors"]) == (2, 1, ["server exited"])
    targets = run.judge(rows)
    assert [(t["setup"], t["name"], t["passed"]) for t in targets] == [
        ("A", "throughput", True),  # 500 / 200 = 2.5
        ("A", "p50 latency", True),  # 20 ms against 50
        ("B", "throughput", None),  # no taskstore run in B
        ("B", "p50 latency", None),
    ]
    assert targets[0]["value"] == 2.5
    table = run.render_table(rows, {"taskstore": "examples/mcp_tasks_server.py does not exist"})
    assert "| A | fastmcp-tasks | 3/3 | 200 (100-300) | 50.0 (50.0-50.0) |" in table
    assert table.endswith("skipped taskstore: examples/mcp_tasks_server.py does not exist")


RUN_FIELDS = {
    "side",
    "setup",
    "run",
    "ok",
    "error",
    "calls",
    "warmup",
    "concurrency",
    "drivers",
    "worker_tasks_per_process",
    "urls",
    "processes",
    "redis_version",
    "completed",
    "wrong",
    "errors",
    "window_seconds",
    "throughput",
    "latency_ms",
    "cpu_seconds",
    "cpu_ms_per_call",
    "redis_commands",
    "notes",
}


@pytest.mark.slow
def test_the_harness_runs_end_to_end_against_fastmcp_tasks(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [
        sys.executable,
        str(RUN_PY),
        "--sides",
        "fastmcp-tasks",
        "--setups",
        "A,B",
        "--runs",
        "1",
        "--calls",
        "12",
        "--warmup",
        "4",
        "--concurrency",
        "4",
        "--timeout",
        "120",
        "--json",
        str(out),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["schema"] == "taskstore-redis-mcp-tasks-bench/1"
    assert document["settings"]["calls"] == 12
    assert set(document["settings"]["commands"]) == {"taskstore", "fastmcp-tasks"}
    assert document["environment"]["versions"]["fastmcp-tasks"] is not None
    runs = document["runs"]
    assert [(r["side"], r["setup"]) for r in runs] == [
        ("fastmcp-tasks", "A"),
        ("fastmcp-tasks", "B"),
    ]
    for result in runs:
        assert set(result) >= RUN_FIELDS
        assert result["ok"] is True and result["error"] is None
        # every timed call came back with n * n (the driver checks each result)
        assert (result["completed"], result["wrong"], result["errors"]) == (12, 0, 0)
        assert result["notes"] == []  # every process stopped cleanly
        assert set(result["latency_ms"]) == {"p50", "p95", "p99", "mean", "max"}
        assert result["throughput"] > 0
        assert set(result["cpu_seconds"]) == {"servers", "workers", "redis", "drivers"}
        assert result["redis_commands"] > 0
    a, b = runs
    assert [p["role"] for p in a["processes"]] == ["server"]
    assert len(a["urls"]) == 1 and a["worker_tasks_per_process"] == 4
    assert [p["role"] for p in b["processes"]] == ["server", "server", "worker", "worker"]
    assert len(b["urls"]) == 2 and b["worker_tasks_per_process"] == 2
    assert b["processes"][0]["argv"][-2:] == ["--workers", "0"]  # the servers run no calls
    rows = document["summary"]
    assert [(r["setup"], r["side"], r["ok_runs"]) for r in rows] == [
        ("A", "fastmcp-tasks", 1),
        ("B", "fastmcp-tasks", 1),
    ]
    assert all(t["passed"] is None for t in document["targets"])  # one side: nothing judged


@pytest.mark.slow
def test_a_server_that_exits_at_start_fails_its_run_with_the_reason(tmp_path: Path) -> None:
    failing = run.Side(
        name="exits",
        server=("{python}", "-c", "import sys; print('no such option'); sys.exit(3)"),
        worker=("{python}", "-c", "import sys; sys.exit(3)"),
        script=RUN_PY,
    )
    args = run.parser().parse_args(["--calls", "5", "--warmup", "0", "--concurrency", "2"])
    result = run.run_one(failing, run.SETUPS["A"], args, tmp_path)
    assert result["ok"] is False
    assert result["error"] == "server exited with 3 at start: no such option"
    assert (result["completed"], result["throughput"], result["latency_ms"]) == (0, None, None)
