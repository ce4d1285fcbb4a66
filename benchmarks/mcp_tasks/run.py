"""MCP task calls, end to end: this project's tasks runtime against fastmcp-tasks.

    python benchmarks/mcp_tasks/run.py [--sides taskstore,fastmcp-tasks] [--setups A,B]
        [--runs 5] [--calls 2000] [--warmup 200] [--concurrency 50] [--drivers 1]
        [--worker-tasks N] [--json PATH] [--timeout 300]

Each side serves the task tool ``slow_square(n, seconds=0)`` over streamable HTTP at
``http://127.0.0.1:PORT/mcp`` and keeps its tasks in Redis; the callers are FastMCP 4's
``fastmcp.Client``, whose tasks client extension (fastmcp-tasks' ``TasksClientExtension``,
registered on every client once ``fastmcp_tasks`` is imported) resolves the task a
``tools/call`` returns by polling ``tasks/get``, so ``call_tool`` returns the tool's result.

Setups (the same process counts on both sides):

- ``A``: one server process that also runs the tool calls (``--workers W``, W tasks at once);
- ``B``: two server processes that run none (``--workers 0``) and two worker processes
  (``--worker-only --workers W``); the callers are spread over the two server URLs, lane
  ``i`` on URL ``i mod 2``.

Every run starts a fresh ``redis-server`` (``taskstore_redis.testing.start_redis_server``:
a free loopback port, no persistence) and fresh processes, waits until every server answers
on its port and every worker holds a connection to Redis, then starts the load driver(s): a
process of its own (``--drivers`` of them), so that its CPU is not counted with the
servers'. A driver opens one ``fastmcp.Client`` per server URL, shared by its lanes, runs
``--warmup`` calls, reports ready, and on the go runs its share of ``--calls`` with its share
of ``--concurrency`` lanes (each lane one call in flight, taking the next call as soon as
its last one returned), checking every result (``n * n``).

Figures of a run: calls/s over the window from the first driver's start to the last
driver's end (``time.monotonic``, system-wide on Linux); latency of a call from just before
``call_tool`` to the result in hand (``time.perf_counter``), nearest-rank percentiles over
all calls; CPU seconds over the timed window of the servers and workers
(``/proc/<pid>/stat``), Redis (``INFO cpu``) and the drivers (``time.process_time``), and
the commands Redis processed (``INFO stats`` ``total_commands_processed``, which counts
the commands scripts run as well).
Runs are interleaved (setup after setup, side after side, run after run) so that drifting
load hits both sides alike; the summary gives the median and the range over the runs.
See benchmarks/README.md, section "MCP task calls".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCHEMA = "taskstore-redis-mcp-tasks-bench/1"
TOOL = "slow_square"
READY_TIMEOUT = 60.0  # seconds for the processes, then for the drivers' warm-up
STOP_TIMEOUT = 10.0  # seconds a process has to exit after SIGTERM before SIGKILL
THROUGHPUT_GOAL = 2.0  # taskstore / fastmcp-tasks, calls/s


# =============================================================================================
# THE COMMAND LINES OF EACH SIDE: the one place to adjust them.
#
# Placeholders: {python} (this interpreter), {redis_url}, {port}, {workers} (tool calls the
# process runs at once; 0 = none). Processes run in the repository's root with the root on
# PYTHONPATH. A server must serve streamable HTTP at http://127.0.0.1:{port}/mcp with the
# task tool slow_square(n: int, seconds: float = 0) -> int, and stop on SIGTERM.
# =============================================================================================
@dataclasses.dataclass(frozen=True)
class Side:
    """One side of the comparison: its server and worker command lines."""

    name: str
    server: tuple[str, ...]
    worker: tuple[str, ...]
    script: Path  # must exist for the side to run


SIDES: dict[str, Side] = {
    "taskstore": Side(
        name="taskstore",
        server=(
            "{python}", "examples/mcp_tasks_server.py",
            "--redis-url", "{redis_url}", "--port", "{port}", "--workers", "{workers}",
        ),
        worker=(
            "{python}", "examples/mcp_tasks_server.py",
            "--redis-url", "{redis_url}", "--worker-only", "--workers", "{workers}",
        ),
        script=REPO / "examples" / "mcp_tasks_server.py",
    ),
    "fastmcp-tasks": Side(
        name="fastmcp-tasks",
        server=(
            "{python}", "benchmarks/mcp_tasks/fastmcp_tasks_server.py",
            "--redis-url", "{redis_url}", "--port", "{port}", "--workers", "{workers}",
        ),
        worker=(
            "{python}", "benchmarks/mcp_tasks/fastmcp_tasks_server.py",
            "--redis-url", "{redis_url}", "--worker-only", "--workers", "{workers}",
        ),
        script=HERE / "fastmcp_tasks_server.py",
    ),
}  # fmt: skip
# =============================================================================================


@dataclasses.dataclass(frozen=True)
class Setup:
    """A topology: server processes (each running ``server_workers`` calls at once, or none)
    and separate worker processes."""

    name: str
    servers: int
    workers: int  # separate worker processes
    description: str


SETUPS: dict[str, Setup] = {
    "A": Setup("A", servers=1, workers=0, description="1 server process running the calls"),
    "B": Setup("B", servers=2, workers=2, description="2 server processes + 2 worker processes"),
}


class Unavailable(Exception):
    """A side cannot run here; the message is the one-line reason."""


class RunFailed(Exception):
    """A run did not complete; the message is the one-line reason."""


# ------------------------------------------------------------------------- pure helpers
def parse_names(text: str, known: Sequence[str], what: str) -> list[str]:
    """``"a, b,a"`` -> ``["a", "b"]``, each one of ``known``; order kept, duplicates dropped."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name not in known:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(known)})")
        if name not in names:
            names.append(name)
    return names


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (``fraction`` in (0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_figures(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, mean and max of call latencies, in ms."""
    ordered = sorted(latencies_ms)
    return {
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "mean": statistics.fmean(ordered),
        "max": ordered[-1],
    }


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max of the values (None when there are none)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def command(template: Sequence[str], **values: object) -> list[str]:
    """A side's command line with its placeholders filled in."""
    return [part.format(**values) for part in template]


def worker_tasks(setup: Setup, concurrency: int, given: int | None) -> int:
    """Calls each call-running process runs at once: ``given``, or the in-flight calls split
    evenly over those processes (rounded up), so that the total is the same on both sides."""
    if given is not None:
        return given
    processes = setup.workers or setup.servers
    return math.ceil(concurrency / processes)


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setup, side), in the order met: medians and ranges over the ok runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["setup"], run["side"]), []).append(run)
    rows = []
    for (setup, side), group in groups.items():
        ok = [r for r in group if r["ok"]]
        cpu = [
            r["cpu_ms_per_call"]["total"] for r in ok if r["cpu_ms_per_call"]["total"] is not None
        ]
        rows.append(
            {
                "setup": setup,
                "side": side,
                "runs": len(group),
                "ok_runs": len(ok),
                "throughput": spread([r["throughput"] for r in ok]),
                "p50_ms": spread([r["latency_ms"]["p50"] for r in ok]),
                "p99_ms": spread([r["latency_ms"]["p99"] for r in ok]),
                "cpu_ms_per_call": spread(cpu),
                "redis_commands_per_call": spread(
                    [r["redis_commands"] / r["completed"] for r in ok if r["redis_commands"]]
                ),
                "errors": sorted({r["error"] for r in group if r["error"]}),
            }
        )
    return rows


def judge(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets per setup: taskstore's median throughput >= 2x fastmcp-tasks', and its
    median p50 below theirs. ``passed`` is None when a side has no ok run in that setup."""
    by_key = {(r["setup"], r["side"]): r for r in rows}
    targets = []
    for setup in dict.fromkeys(r["setup"] for r in rows):
        ours, theirs = by_key.get((setup, "taskstore")), by_key.get((setup, "fastmcp-tasks"))
        ratio: float | None = None
        p50s: tuple[float, float] | None = None
        if ours and theirs and ours["ok_runs"] and theirs["ok_runs"]:
            ratio = ours["throughput"]["median"] / theirs["throughput"]["median"]
            p50s = (ours["p50_ms"]["median"], theirs["p50_ms"]["median"])
        targets.append(
            {
                "setup": setup,
                "name": "throughput",
                "goal": f"taskstore / fastmcp-tasks calls/s >= {THROUGHPUT_GOAL:g}",
                "value": ratio,
                "passed": None if ratio is None else ratio >= THROUGHPUT_GOAL,
            }
        )
        targets.append(
            {
                "setup": setup,
                "name": "p50 latency",
                "goal": "taskstore p50 < fastmcp-tasks p50",
                "value": None if p50s is None else {"taskstore": p50s[0], "fastmcp-tasks": p50s[1]},
                "passed": None if p50s is None else p50s[0] < p50s[1],
            }
        )
    return targets


def _fmt(figures: dict[str, float] | None, digits: int) -> str:
    if figures is None:
        return "-"
    return (
        f"{figures['median']:,.{digits}f} ({figures['min']:,.{digits}f}-"
        f"{figures['max']:,.{digits}f})"
    )


def render_table(rows: Sequence[dict[str, Any]], skipped: dict[str, str]) -> str:
    """A Markdown table of the summary: median (min-max) over the ok runs."""
    lines = [
        "| setup | side | ok runs | calls/s | p50 ms | p99 ms | CPU ms/call | Redis commands/call "
        "| note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setup']} | {row['side']} | {row['ok_runs']}/{row['runs']} "
            f"| {_fmt(row['throughput'], 0)} | {_fmt(row['p50_ms'], 1)} "
            f"| {_fmt(row['p99_ms'], 1)} | {_fmt(row['cpu_ms_per_call'], 2)} "
            f"| {_fmt(row.get('redis_commands_per_call'), 1)} "
            f"| {'; '.join(row['errors']).replace('|', '/')} |"
        )
    lines += [f"skipped {name}: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines)


def render_targets(targets: Sequence[dict[str, Any]]) -> list[str]:
    """One line per target: PASS, MISS or not judged."""
    lines = []
    for target in targets:
        verdict = {True: "PASS", False: "MISS", None: "not judged"}[target["passed"]]
        value = target["value"]
        if isinstance(value, float):
            shown = f"{value:.2f}"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k} {v:.1f} ms" for k, v in value.items())
        else:
            shown = "no figures on both sides"
        lines.append(
            f"setup {target['setup']}, {target['name']} ({target['goal']}): {shown}: {verdict}"
        )
    return lines


# ------------------------------------------------------------------- processes and CPU
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads), from /proc; None
    where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def holds_connection_to(pid: int, port: int) -> bool:
    """Whether the process has an established TCP connection to 127.0.0.1:``port``.

    Its sockets (``/proc/<pid>/fd``) matched against ``/proc/net/tcp``. Where there is no
    /proc this cannot be told, and True is returned: the warm-up then covers the start.
    """
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return not Path("/proc").is_dir()
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    remote = f"0100007F:{port:04X}"
    for line in table:
        parts = line.split()
        if parts[2] == remote and parts[3] == "01" and parts[9] in inodes:  # 01: ESTABLISHED
            return True
    return False


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers_on(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclasses.dataclass
class Proc:
    """A process this harness started."""

    role: str  # "server" or "worker"
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(text[-lines:])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_process(role: str, argv: list[str], log: Path, port: int | None) -> Proc:
    """Start one server or worker process; its stdout and stderr go to ``log``."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, cwd=REPO, env=_child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    return Proc(role, argv, popen, log, port)


def stop_processes(procs: Sequence[subprocess.Popen[Any]]) -> None:
    """SIGTERM each process, then SIGKILL any still running after STOP_TIMEOUT."""
    for popen in procs:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for popen in procs:
        try:
            popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=STOP_TIMEOUT)


def wait_ready(procs: Sequence[Proc], redis_port: int, timeout: float) -> None:
    """Until every server answers on its port and every worker holds a Redis connection."""
    deadline = time.monotonic() + timeout
    waiting = list(procs)
    while waiting:
        for proc in list(waiting):
            if proc.popen.poll() is not None:
                raise RunFailed(
                    f"{proc.role} exited with {proc.popen.returncode} at start: {proc.log_tail()}"
                )
            ready = (
                answers_on(proc.port)
                if proc.port is not None
                else holds_connection_to(proc.popen.pid, redis_port)
            )
            if ready:
                waiting.remove(proc)
        if waiting and time.monotonic() > deadline:
            raise RunFailed(
                f"{waiting[0].role} not ready within {timeout:.0f} s: {waiting[0].log_tail()}"
            )
        if waiting:
            time.sleep(0.05)


def redis_info(url: str, section: str) -> dict[str, Any]:
    """One section of the Redis server's ``INFO``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info(section)
    finally:
        client.close()
    return info


def redis_cpu_seconds(url: str) -> float:
    """The Redis server's CPU time so far (``used_cpu_user`` + ``used_cpu_sys``)."""
    info = redis_info(url, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# ------------------------------------------------------------------------------ drivers
def _read_line(stream: IO[bytes], deadline: float, popen: subprocess.Popen[bytes]) -> str:
    """The next line a driver prints, or RunFailed past the deadline or if it exits."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunFailed("a load driver did not answer in time")
            if selector.select(timeout=min(left, 1.0)):
                line = stream.readline()
                if not line:
                    raise RunFailed(f"a load driver exited ({popen.wait()})")
                return line.decode().strip()


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares (the first ones larger)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_one(
    side: Side,
    setup: Setup,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    """One run of one side in one setup, on a fresh Redis; its record (``ok`` False on failure)."""
    from taskstore_redis.testing import start_redis_server

    tasks = worker_tasks(setup, args.concurrency, args.worker_tasks)
    record: dict[str, Any] = {
        "side": side.name,
        "setup": setup.name,
        "ok": False,
        "error": None,
        "calls": args.calls,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "drivers": args.drivers,
        "seconds_per_call": args.seconds,
        "worker_tasks_per_process": tasks,
        "urls": [],
        "processes": [],
        "redis_version": None,
        "completed": 0,
        "wrong": 0,
        "errors": 0,
        "error_samples": [],
        "window_seconds": None,
        "throughput": None,
        "latency_ms": None,
        "cpu_seconds": {"servers": None, "workers": None, "redis": None, "drivers": None},
        "cpu_ms_per_call": {"servers": None, "workers": None, "redis": None, "total": None},
        "redis_commands": None,
    }
    server = start_redis_server(["--save", "", "--appendonly", "no"])
    procs: list[Proc] = []
    drivers: list[subprocess.Popen[bytes]] = []
    try:
        record["redis_version"] = redis_info(server.url, "server")["redis_version"]
        python = sys.executable
        for i in range(setup.servers):
            port = free_port()
            argv = command(
                side.server,
                python=python,
                redis_url=server.url,
                port=port,
                workers=0 if setup.workers else tasks,
            )
            procs.append(start_process("server", argv, work / f"server-{i}.log", port))
            record["urls"].append(f"http://127.0.0.1:{port}/mcp")
        for i in range(setup.workers):
            argv = command(side.worker, python=python, redis_url=server.url, port=0, workers=tasks)
            procs.append(start_process("worker", argv, work / f"worker-{i}.log", None))
        wait_ready(procs, server.port, READY_TIMEOUT)

        lanes, calls, warm = (
            split(args.concurrency, args.drivers),
            split(args.calls, args.drivers),
            split(args.warmup, args.drivers),
        )
        first_lane = 0
        for d in range(args.drivers):
            argv = [
                python, str(Path(__file__).resolve()), "drive",
                "--urls", ",".join(record["urls"]),
                "--lanes", str(lanes[d]), "--first-lane", str(first_lane),
                "--calls", str(calls[d]), "--warmup", str(warm[d]),
                "--seconds", str(args.seconds), "--timeout", str(args.timeout),
            ]  # fmt: skip
            first_lane += lanes[d]
            with (work / f"driver-{d}.log").open("wb") as log:
                drivers.append(
                    subprocess.Popen(
                        argv,
                        cwd=REPO,
                        env=_child_env(),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                    )
                )
        deadline = time.monotonic() + READY_TIMEOUT + args.timeout
        for popen in drivers:
            assert popen.stdout is not None
            line = _read_line(popen.stdout, deadline, popen)
            if line != "ready":
                raise RunFailed(f"a load driver said {line[:200]!r} instead of ready")

        # the timed window: CPU counters now, go, results, CPU counters again
        cpu_start = {p.popen.pid: process_cpu_seconds(p.popen.pid) for p in procs}
        redis_start = redis_cpu_seconds(server.url)
        commands_start = redis_info(server.url, "stats")["total_commands_processed"]
        for popen in drivers:
            assert popen.stdin is not None
            popen.stdin.write(b"go\n")
            popen.stdin.flush()
        deadline = time.monotonic() + args.timeout
        results = []
        for popen in drivers:
            assert popen.stdout is not None
            results.append(json.loads(_read_line(popen.stdout, deadline, popen)))
        redis_end = redis_cpu_seconds(server.url)
        commands_end = redis_info(server.url, "stats")["total_commands_processed"]
        cpu_end = {p.popen.pid: process_cpu_seconds(p.popen.pid) for p in procs}

        latencies = [ms for result in results for ms in result["latencies_ms"]]
        record["completed"] = sum(r["completed"] for r in results)
        record["wrong"] = sum(r["wrong"] for r in results)
        record["errors"] = sum(r["errors"] for r in results)
        record["error_samples"] = [s for r in results for s in r["error_samples"]][:5]
        window = max(r["end"] for r in results) - min(r["start"] for r in results)
        record["window_seconds"] = window
        record["throughput"] = record["completed"] / window if window > 0 else None
        record["latency_ms"] = latency_figures(latencies) if latencies else None
        for proc in procs:
            before, after = cpu_start[proc.popen.pid], cpu_end[proc.popen.pid]
            record["processes"].append(
                {
                    "role": proc.role,
                    "argv": proc.argv,
                    "cpu_seconds": None if before is None or after is None else after - before,
                }
            )
        cpu = record["cpu_seconds"]
        for role in ("server", "worker"):
            shares = [p["cpu_seconds"] for p in record["processes"] if p["role"] == role]
            cpu[f"{role}s"] = None if None in shares or not shares else sum(shares)
        cpu["redis"] = redis_end - redis_start
        record["redis_commands"] = commands_end - commands_start
        cpu["drivers"] = sum(r["cpu_seconds"] for r in results)
        if record["completed"]:
            per_call = record["cpu_ms_per_call"]
            for key in ("servers", "workers", "redis"):
                per_call[key] = None if cpu[key] is None else 1000 * cpu[key] / record["completed"]
            parts = [cpu["servers"], cpu["workers"] or 0.0, cpu["redis"]]
            if None not in parts:
                per_call["total"] = 1000 * sum(parts) / record["completed"]
        if record["wrong"] or record["errors"] or record["completed"] != args.calls:
            sample = record["error_samples"][0] if record["error_samples"] else "no error text"
            record["error"] = (
                f"{record['completed']}/{args.calls} calls right, {record['wrong']} wrong, "
                f"{record['errors']} failed: {sample}"
            )
        else:
            record["ok"] = True
    except RunFailed as exc:
        record["error"] = str(exc)
    except Exception as exc:  # a run's own failure must not end the other runs
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_processes(drivers)
        for popen in drivers:
            for stream in (popen.stdin, popen.stdout):
                if stream is not None:
                    stream.close()
        stop_processes([p.popen for p in procs])
        server.stop()
    record["notes"] = [
        f"{proc.role} exited with {proc.popen.returncode}: {proc.log_tail(2)}"
        for proc in procs
        if proc.popen.returncode not in (0, -signal.SIGTERM)
    ]
    return record


# ------------------------------------------------------------------ the driver process
def returned(result: Any) -> Any:
    """The integer a ``slow_square`` call returned, as FastMCP's ``CallToolResult`` holds it.

    FastMCP's client unwraps ``{"result": value}`` into ``.data`` only when the output schema
    carries FastMCP's own wrap marker (``x-fastmcp-wrap-result``); for another server's
    wrapped scalar ``.data`` is an object with a ``result`` attribute. The structured content,
    ``{"result": value}`` on the wire, is the same on both sides.
    """
    structured = result.structured_content
    if isinstance(structured, dict) and "result" in structured:
        return structured["result"]
    return result.data


async def _pump(
    clients: Sequence[Any],
    first_lane: int,
    lanes: int,
    calls: int,
    seconds: float,
    timeout: float,
    out: dict[str, Any],
) -> list[float]:
    """``calls`` calls, ``lanes`` at a time; lane ``i`` uses client ``i mod len(clients)``."""
    next_call = iter(range(calls))
    latencies: list[float] = []

    async def lane(index: int) -> None:
        client = clients[index % len(clients)]
        for n in next_call:
            t0 = time.perf_counter()
            try:
                result = await client.call_tool(
                    TOOL, {"n": n, "seconds": seconds}, timeout=timeout, raise_on_error=True
                )
            except Exception as exc:
                out["errors"] += 1
                if len(out["error_samples"]) < 5:
                    out["error_samples"].append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            if returned(result) == n * n:
                out["completed"] += 1
            else:
                out["wrong"] += 1
                if len(out["error_samples"]) < 5:
                    out["error_samples"].append(
                        f"slow_square({n}) returned {returned(result)!r}"[:300]
                    )

    await asyncio.gather(*(lane(first_lane + i) for i in range(lanes)))
    return latencies


async def drive(args: argparse.Namespace) -> None:
    """Warm up, print ready, wait for go on stdin, run the timed calls, print one JSON line."""
    import fastmcp
    import fastmcp_tasks  # registers the tasks client extension on every fastmcp.Client

    assert fastmcp_tasks.TasksExtension is not None
    urls = args.urls.split(",")
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(fastmcp.Client(url, timeout=args.timeout))
            for url in urls
        ]
        scratch: dict[str, Any] = {"completed": 0, "wrong": 0, "errors": 0, "error_samples": []}
        await _pump(
            clients, args.first_lane, args.lanes, args.warmup, args.seconds, args.timeout, scratch
        )
        if scratch["wrong"] or scratch["errors"]:
            print(f"warm-up failed: {scratch['error_samples'][:1]}", flush=True)
            return
        print("ready", flush=True)
        go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if go.strip() != "go":
            return
        out: dict[str, Any] = {"completed": 0, "wrong": 0, "errors": 0, "error_samples": []}
        cpu0, start = time.process_time(), time.monotonic()
        latencies = await _pump(
            clients, args.first_lane, args.lanes, args.calls, args.seconds, args.timeout, out
        )
        end, cpu1 = time.monotonic(), time.process_time()
        out.update(latencies_ms=latencies, start=start, end=end, cpu_seconds=cpu1 - cpu0)
        print(json.dumps(out), flush=True)


# ------------------------------------------------------------------------------- main
def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in (
        "taskstore-redis",
        "mcp",
        "fastmcp",
        "fastmcp-tasks",
        "pydocket",
        "redis",
        "httpx",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line (``drive`` is the load driver the harness starts)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", default="taskstore,fastmcp-tasks")
    p.add_argument("--setups", default="A,B")
    p.add_argument("--runs", type=_positive, default=5, help="runs per side and setup")
    p.add_argument("--calls", type=_positive, default=2000, help="timed calls per run")
    p.add_argument("--warmup", type=_non_negative, default=200, help="calls before the timing")
    p.add_argument("--concurrency", type=_positive, default=50, help="calls in flight")
    p.add_argument("--drivers", type=_positive, default=1, help="load-driver processes")
    p.add_argument(
        "--worker-tasks",
        type=_positive,
        default=None,
        help="calls each call-running process runs at once "
        "(default: --concurrency split over those processes)",
    )
    p.add_argument("--seconds", type=float, default=0.0, help="slow_square's sleep")
    p.add_argument("--timeout", type=_positive, default=300, help="seconds per run")
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("drive", help=argparse.SUPPRESS)
    d.add_argument("--urls", required=True)
    d.add_argument("--lanes", type=_positive, required=True)
    d.add_argument("--first-lane", type=_non_negative, default=0)
    d.add_argument("--calls", type=_positive, required=True)
    d.add_argument("--warmup", type=_non_negative, default=0)
    d.add_argument("--seconds", type=float, default=0.0)
    d.add_argument("--timeout", type=_positive, default=300)
    return p


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 0 when every run completed with every call right."""
    p = parser()
    args = p.parse_args(argv)
    if args.command == "drive":
        asyncio.run(drive(args))
        return 0
    try:
        sides = parse_names(args.sides, list(SIDES), "side")
        setups = parse_names(args.setups, list(SETUPS), "setup")
    except ValueError as exc:
        p.error(str(exc))
    if args.concurrency < args.drivers:
        p.error("--concurrency must be at least --drivers")
    if args.seconds < 0:
        p.error("--seconds must be >= 0")
    started = datetime.datetime.now(datetime.UTC)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    warnings = []
    if load_start is not None and load_start > (os.cpu_count() or 1) / 2:
        warnings.append(f"load average {load_start:.1f} at the start: figures are indicative only")
    skipped: dict[str, str] = {}
    for name in list(sides):
        if not SIDES[name].script.exists():
            skipped[name] = f"{SIDES[name].script.relative_to(REPO)} does not exist"
            sides.remove(name)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mcp-tasks-bench-") as tmp:
        for index in range(args.runs):
            for setup_name in setups:
                for name in sides:
                    setup, side = SETUPS[setup_name], SIDES[name]
                    print(
                        f"run {index + 1}/{args.runs}: {name}, setup {setup_name} "
                        f"({setup.description}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    work = Path(tmp) / f"{index}-{setup_name}-{name}"
                    work.mkdir()
                    record = run_one(side, setup, args, work)
                    record["run"] = index
                    runs.append(record)
                    shown = f"FAILED: {record['error']}"
                    if record["ok"]:
                        p50 = record["latency_ms"]["p50"]
                        shown = f"{record['throughput']:,.0f} calls/s, p50 {p50:.1f} ms"
                    print(f"  {shown}", file=sys.stderr, flush=True)
    rows = summarize(runs)
    targets = judge(rows)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    document = {
        "schema": SCHEMA,
        "settings": {
            "sides": sides,
            "setups": {name: dataclasses.asdict(SETUPS[name]) for name in setups},
            "runs": args.runs,
            "calls": args.calls,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "drivers": args.drivers,
            "worker_tasks": args.worker_tasks,
            "seconds_per_call": args.seconds,
            "timeout": args.timeout,
            "lanes_over_urls": "lane i calls server URL i mod (number of servers)",
            "commands": {
                name: {"server": list(SIDES[name].server), "worker": list(SIDES[name].worker)}
                for name in SIDES
            },
        },
        "environment": {
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "versions": _versions(),
        },
        "warnings": warnings,
        "skipped": skipped,
        "runs": runs,
        "summary": rows,
        "targets": targets,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(render_table(rows, skipped))
    for line in [*render_targets(targets), *(f"warning: {w}" for w in warnings)]:
        print(line)
    return 0 if runs and all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
