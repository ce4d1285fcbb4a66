"""The work-queue peer benchmark runner (benchmarks/peers/run.py) and its programs.

The pure parts need no Redis, Node.js or network: argument parsing, the check of a peer's
JSON line against the contract, the grouping of records, the CPU figure, the table, the
ratios and the recovery lines. The project's programs (``taskstore``, ``taskstore-worker``,
``taskstore-raw``) run once each, small, against a real Redis, to check that they keep the
contract (never their speed). So do the Python peers' programs (saq, Docket, streaq, arq),
through the runner's install step: each needs its own virtualenv from the package registry,
and a peer that cannot be installed here (no network) is skipped with the reason. The
peers are optional benchmark tools, not features of the project.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.scripts import load_script

RUN_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "peers" / "run.py"


run = load_script(RUN_PY, "peers_run")


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "peer": "bullmq",
        "ok": True,
        "jobs": 1000,
        "processes": 1,
        "concurrency": 10,
        "add_seconds": 0.5,
        "add_rate": 2000.0,
        "process_seconds": 1.0,
        "process_rate": 1000.0,
        "completed": 1000,
        "failed": 0,
        "worker_cpu_seconds": 0.4,
        "redis_cpu_seconds": 0.1,
        "versions": {"bullmq": "6.7.0", "redis": "7.0.15"},
        "settings": {},
        "error": None,
    }
    base.update(overrides)
    return base


def test_parse_counts_keeps_order_and_drops_duplicates() -> None:
    assert run.parse_counts("4, 1,4") == [4, 1]


@pytest.mark.parametrize("text", ["", "0", "1,-2", "two", "1,,4"])
def test_parse_counts_rejects_what_is_not_a_positive_integer(text: str) -> None:
    with pytest.raises(ValueError):
        run.parse_counts(text)


def test_parse_result_takes_the_last_non_empty_line() -> None:
    line = json.dumps(record(process_rate=1234.5, redelivered=2))
    parsed = run.parse_result(f"npm notice something\n{line}\n\n")
    assert parsed["process_rate"] == 1234.5
    assert parsed["redelivered"] == 2  # extra fields are kept


def test_parse_result_accepts_null_rates_of_a_failed_run() -> None:
    line = json.dumps(record(ok=False, add_rate=None, process_rate=None, error="timed out"))
    assert run.parse_result(line)["error"] == "timed out"


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "no output"),
        ("   \n", "no output"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({k: v for k, v in record().items() if k != "process_rate"}), "process_rate"),
        (json.dumps(record(jobs="1000")), "'jobs'"),
        (json.dumps(record(completed=True)), "'completed'"),  # a bool is not a count
        (json.dumps(record(ok=1)), "'ok'"),  # nor a count a flag
        (json.dumps(record(versions=[])), "'versions'"),
        (json.dumps(record(worker_cpu_seconds="0.4")), "'worker_cpu_seconds'"),
        (json.dumps({k: v for k, v in record().items() if k != "redis_cpu_seconds"}), "redis_cpu"),
    ],
)
def test_parse_result_rejects_output_outside_the_contract(stdout: str, message: str) -> None:
    with pytest.raises(run.BadResult, match=message):
        run.parse_result(stdout)


def test_failed_record_follows_the_contract() -> None:
    failed = run.failed_record("saq", 500, 4, 10, "killed")
    assert run.parse_result(json.dumps(failed)) == failed
    assert failed["ok"] is False


def test_summarize_groups_by_peer_and_processes_with_medians_of_ok_runs() -> None:
    records = [
        record(process_rate=900.0, add_rate=1000.0),
        record(peer="saq", process_rate=300.0, redelivered=3),
        record(process_rate=1100.0, add_rate=3000.0),
        record(process_rate=1000.0, add_rate=2000.0),
        record(processes=4, ok=False, process_rate=None, add_rate=None, error="timed out"),
    ]
    rows = run.summarize(records)
    assert [(r.peer, r.processes) for r in rows] == [("bullmq", 1), ("saq", 1), ("bullmq", 4)]
    bullmq1, saq1, bullmq4 = rows
    assert (bullmq1.runs, bullmq1.ok_runs) == (3, 3)
    assert bullmq1.process_rate == 1000.0
    assert bullmq1.add_rate == 2000.0
    assert saq1.note == "3 redelivered"
    assert (bullmq4.ok_runs, bullmq4.process_rate, bullmq4.note) == (0, None, "timed out")


def test_cpu_per_10k_is_workers_and_redis_per_10000_completed_jobs() -> None:
    assert run.cpu_per_10k(record(worker_cpu_seconds=1.5, redis_cpu_seconds=0.5)) == 20.0
    assert run.cpu_per_10k(record(redis_cpu_seconds=None)) is None
    assert run.cpu_per_10k(record(worker_cpu_seconds=None)) is None
    assert run.cpu_per_10k(record(ok=False, completed=0)) is None


def test_summarize_takes_the_median_cpu_of_the_ok_runs() -> None:
    rows = run.summarize(
        [
            record(worker_cpu_seconds=1.0, redis_cpu_seconds=0.0),
            record(worker_cpu_seconds=3.0, redis_cpu_seconds=1.0),
            record(worker_cpu_seconds=50.0, ok=False, error="timed out"),
            record(worker_cpu_seconds=None),
        ]
    )
    # 10 and 40 s per 10,000 jobs: the failed run and the unmeasured one are left out
    assert rows[0].cpu_per_10k == 25.0


def test_summarize_ignores_the_rates_of_failed_runs() -> None:
    rows = run.summarize([record(process_rate=10.0, ok=False, error="x"), record()])
    assert rows[0].process_rate == 1000.0
    assert rows[0].note == "x"


def test_render_table_shows_rates_dashes_and_skipped_peers() -> None:
    rows = run.summarize(
        [
            record(process_rate=12345.6, add_rate=50000.0),
            record(peer="saq", ok=False, add_rate=None, process_rate=None, error="a|b"),
        ]
    )
    table = run.render_table(rows, {"taskstore": "not built"})
    lines = table.splitlines()
    assert lines[0].startswith("| peer | processes |")
    assert lines[0].endswith("| process /s | CPU s /10k jobs | note |")
    assert lines[2] == "| bullmq | 1 | 10 | 1,000 | 1/1 | 50,000 | 12,346 | 5.00 |  |"
    assert lines[3] == "| saq | 1 | 10 | 1,000 | 0/1 | - | - | - | a/b |"
    assert lines[4] == "skipped taskstore: not built"


def test_peers_registry_names_match_their_entries() -> None:
    assert set(run.PEERS) >= {
        "bullmq",
        "saq",
        "docket",
        "streaq",
        "arq",
        "taskstore",
        "taskstore-worker",
        "taskstore-raw",
    }
    assert all(peer.name == name for name, peer in run.PEERS.items())


def test_bullmq_is_skipped_with_a_reason_when_node_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(run.shutil, "which", lambda name: None)
    with pytest.raises(run.PeerUnavailable, match=r"Node\.js and npm are needed"):
        run.prepare_bullmq(tmp_path / "bullmq")
    assert not (tmp_path / "bullmq").exists()


def test_bullmq_is_skipped_with_a_reason_when_node_is_too_old(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "node"
    fake.write_text("#!/bin/sh\necho v16.20.0\n")
    fake.chmod(0o755)
    monkeypatch.setattr(run.shutil, "which", lambda name: str(fake))
    with pytest.raises(run.PeerUnavailable, match=r"18 or newer is needed \(found v16\.20\.0\)"):
        run.prepare_bullmq(tmp_path / "bullmq")


def test_comparisons_give_the_ratios_the_targets_name_at_each_process_count() -> None:
    rows = run.summarize(
        [
            record(process_rate=1000.0),
            record(processes=4, process_rate=2000.0),
            record(peer="saq", processes=4, process_rate=500.0),
            record(peer="taskstore", processes=4, process_rate=1500.0),
            record(peer="taskstore-raw", processes=4, process_rate=3000.0),
            record(peer="taskstore", process_rate=800.0),
        ]
    )
    assert run.comparisons(rows) == [
        "taskstore / bullmq, 4 process(es): 0.75",
        "taskstore / saq, 4 process(es): 3.00",
        "taskstore / taskstore-raw, 4 process(es): 0.50",
        "taskstore / bullmq, 1 process(es): 0.80",
    ]


def test_comparisons_set_run_worker_against_the_peers_not_against_the_raw_scripts() -> None:
    rows = run.summarize(
        [
            record(peer="docket", process_rate=100.0),
            record(peer="taskstore-raw", process_rate=4000.0),
            record(peer="taskstore", process_rate=2000.0),
            record(peer="taskstore-worker", process_rate=1000.0),
            record(peer="arq", process_rate=250.0),
        ]
    )
    assert run.comparisons(rows) == [
        "taskstore / docket, 1 process(es): 20.00",
        "taskstore / taskstore-raw, 1 process(es): 0.50",
        "taskstore / arq, 1 process(es): 8.00",
        "taskstore-worker / docket, 1 process(es): 10.00",
        "taskstore-worker / arq, 1 process(es): 4.00",
    ]


def test_a_python_peer_is_skipped_with_a_reason_when_its_install_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(argv: Any, cwd: Path, what: str) -> None:
        raise run.PeerUnavailable(f"{what} failed (1): no network")

    monkeypatch.setattr(run, "_run_install", refuse)
    with pytest.raises(run.PeerUnavailable, match=r"python -m venv \(arq\) failed"):
        run.prepare_arq(tmp_path / "arq")


def test_comparisons_skip_a_peer_without_a_rate() -> None:
    rows = run.summarize(
        [
            record(ok=False, process_rate=None, add_rate=None, error="timed out"),
            record(peer="taskstore", process_rate=800.0),
        ]
    )
    assert run.comparisons(rows) == []


def test_recovery_lines_name_the_lease_and_the_time_to_the_next_claim() -> None:
    probe = {
        "lease_ms": 500,
        "kill_to_next_claim_ms": 453.4,
        "lease_left_at_kill_ms": 447.4,
        "after_lease_deadline_ms": 6.0,
        "attempt": 2,
    }
    lines = run.recovery_lines(
        [record(peer="taskstore", recovery=[probe, {"lease_ms": 2000, "error": "not claimed"}])]
    )
    assert lines == [
        "recovery, lease 500 ms: kill -> next claim 453 ms (lease left at the kill 447 ms; "
        "claimed 6 ms after its deadline)",
        "recovery, lease 2000 ms: not claimed",
    ]


def _run_program(argv: list[str], redis_url: str, prefix: str) -> tuple[int, str, str]:
    options = ["--jobs", "300", "--processes", "2", "--concurrency", "5", "--timeout", "90"]
    done = subprocess.run(
        [*argv, "--redis-url", redis_url, "--prefix", prefix, *options],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _check_contract(peer: str, result: dict[str, Any], redis_url: str, prefix: str) -> None:
    """A completed small run: 300 jobs over 2 processes, measured, and no key left."""
    assert result["peer"] == peer
    assert result["ok"] is True and result["error"] is None
    assert result["completed"] == 300 and result["failed"] == 0
    assert sum(result["per_process"]) == 300 + result["redelivered"]
    assert result["process_rate"] > 0 and result["add_rate"] > 0
    assert result["worker_cpu_seconds"] > 0 and result["redis_cpu_seconds"] > 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"*{prefix}*")) == []
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("peer", ["taskstore", "taskstore-worker", "taskstore-raw"])
def test_the_project_entries_keep_the_contract_and_leave_no_key(
    peer: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    argv = run.PEERS[peer].prepare(tmp_path)
    if peer == "taskstore":  # a short probe keeps the test short
        argv[argv.index("--recovery-lease-ms") + 1] = "200"
    returncode, stdout, stderr = _run_program(argv, redis_url, key_prefix)
    result = run.parse_result(stdout)
    assert returncode == 0, stderr[-2000:]
    _check_contract(peer, result, redis_url, key_prefix)
    assert result["redelivered"] == 0
    if peer == "taskstore":
        (probe,) = result["recovery"]
        assert probe["lease_ms"] == 200
        assert probe["attempt"] == 2  # the killed worker's task, claimed again
        assert probe["kill_to_next_claim_ms"] > 0
    else:
        assert "recovery" not in result


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("peer", ["saq", "docket", "streaq", "arq"])
def test_the_python_peers_keep_the_contract_and_leave_no_key(
    peer: str, redis_url: str, key_prefix: str
) -> None:
    # the runner's own scratch folder: an install made by an earlier run is reused
    try:
        argv = run.PEERS[peer].prepare(run.DEFAULT_WORK / peer)
    except run.PeerUnavailable as exc:
        pytest.skip(f"{peer} cannot be installed here: {exc}")
    returncode, stdout, stderr = _run_program(argv, redis_url, key_prefix)
    result = run.parse_result(stdout)
    assert returncode == 0, stderr[-2000:]
    _check_contract(peer, result, redis_url, key_prefix)
