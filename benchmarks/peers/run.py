"""Work-queue peer benchmark: BullMQ, saq, Docket, streaq, arq and the project's own queue.

    python benchmarks/peers/run.py [--jobs 20000] [--processes 1,4] [--concurrency 10]
        [--peers bullmq,saq,docket,streaq,arq,taskstore,taskstore-worker,taskstore-raw]
        [--repeat 1] [--redis-url URL] [--json PATH] [--timeout 300]

Without ``--redis-url`` a throwaway ``redis-server`` (``taskstore_redis.testing.redis_server``)
runs for the whole run. Each peer is installed into a scratch folder (``--work``, default
``benchmarks/peers/.work/``, git-ignored): BullMQ with ``npm ci`` from the pinned
``bullmq/package-lock.json``; saq, Docket (pydocket), streaq and arq each with pip into a
virtualenv of its own from ``<peer>-requirements.txt``.
A peer that cannot be installed (no Node.js or npm, no registry) is skipped with a one-line
reason. See benchmarks/README.md, section "Peers", for the method and the fairness rules.

The contract of a peer
----------------------
A peer is an entry of ``PEERS``: a :class:`Peer` with a ``name`` and a ``prepare(work_dir)``
callable that installs what the peer needs under ``work_dir`` (a folder of its own) and
returns the command (argv) of its bench program, or raises :class:`PeerUnavailable` with a
one-line reason. The runner then starts, once per worker-process count and repeat::

    <argv> --redis-url URL --jobs N --processes P --concurrency C --prefix PREFIX --timeout T

and the program must

1. add N jobs whose handler does nothing, as fast as its client allows (its own bulk or
   batched API), then run P worker processes, each with C jobs in flight, until all N are
   finished;
2. print ONE JSON object on the last line of stdout with the fields of ``REQUIRED``:
   ``peer`` (its name), ``ok`` (all N completed, none failed), ``jobs``, ``processes``,
   ``concurrency`` (the settings it ran with), ``add_seconds`` / ``add_rate`` (first add
   call to last add acknowledged; jobs/s), ``process_seconds`` / ``process_rate`` (first
   claim by any worker to last completion by any worker; N / seconds), ``completed``,
   ``failed``, ``worker_cpu_seconds`` (user + system CPU time of the P worker processes
   from the start signal to the stop, summed), ``redis_cpu_seconds`` (the server's
   ``used_cpu_user`` + ``used_cpu_sys`` of ``INFO cpu``, from the start signal to the last
   completion; both null when not measured), ``versions`` (object: its library, runtime,
   ``redis`` server version),
   ``settings`` (object: anything else that shapes the figures, e.g. job retention) and
   ``error`` (null or a one-line reason). Extra fields are kept;
3. write only keys whose name contains PREFIX and delete them before it exits (the runner
   checks, deletes leftovers and reports them);
4. exit within T seconds, 0 when ``ok``.

The project's own queue is added the same way: the ``taskstore`` entry runs
``taskstore_bench.py`` (``submit``, ``claim_many``, ``Lease.complete``, then a recovery probe:
a worker SIGKILLed while it holds a lease, kill -> next claim against ``lease_ms``),
``taskstore-worker`` the API users call (``run_worker`` with ``concurrency=C`` per process),
and ``taskstore-raw`` the same scripts through plain redis-py, so that the ratio shows the
store's own cost. The table adds CPU seconds per 10,000 jobs (workers + Redis, over the
processing phase); after it the runner prints the ratios the targets name and the recovery
figures.

The Python programs share ``_program.py`` (stdlib only, as each runs in its own
virtualenv): the options, the worker processes released together (``WorkerPool``, with
``Tally`` on the workers' side) and the record.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / ".work"
INSTALL_TIMEOUT = 900.0  # seconds, per peer
GRACE = 30.0  # seconds a peer may overrun its --timeout before it is killed

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "peer": str,
    "ok": bool,
    "jobs": int,
    "processes": int,
    "concurrency": int,
    "add_seconds": (int, float, type(None)),
    "add_rate": (int, float, type(None)),
    "process_seconds": (int, float, type(None)),
    "process_rate": (int, float, type(None)),
    "completed": int,
    "failed": int,
    "worker_cpu_seconds": (int, float, type(None)),
    "redis_cpu_seconds": (int, float, type(None)),
    "versions": dict,
    "settings": dict,
    "error": (str, type(None)),
}


class PeerUnavailable(Exception):
    """A peer cannot run here; the message is the one-line reason."""


class BadResult(ValueError):
    """A peer's output does not follow the contract."""


@dataclasses.dataclass(frozen=True)
class Peer:
    """One side of the comparison: how to install it and the command of its bench program."""

    name: str
    prepare: Callable[[Path], list[str]]


# ------------------------------------------------------------------------- installs
def _run_install(argv: Sequence[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(f"{what} took longer than {INSTALL_TIMEOUT:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PeerUnavailable(f"{what} failed ({proc.returncode}): {tail[0]}")


def _fingerprint(*files: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def prepare_bullmq(work: Path) -> list[str]:
    """Install the pinned BullMQ with ``npm ci`` into ``work``; the argv of bench.mjs."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise PeerUnavailable("Node.js and npm are needed (node or npm is not on PATH)")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 18:
        raise PeerUnavailable(f"Node.js 18 or newer is needed (found {version or 'nothing'})")
    source = HERE / "bullmq"
    files = [source / "package.json", source / "package-lock.json"]
    work.mkdir(parents=True, exist_ok=True)
    marker = work / ".installed"
    stamp = _fingerprint(*files)
    if not (marker.exists() and marker.read_text() == stamp and (work / "node_modules").is_dir()):
        for file in files:
            shutil.copy2(file, work / file.name)
        _run_install([npm, "ci", "--no-audit", "--no-fund"], work, "npm ci (BullMQ)")
        marker.write_text(stamp)
    # node resolves `bullmq` from the script's own folder: run a copy next to node_modules
    shutil.copy2(source / "bench.mjs", work / "bench.mjs")
    return [node, str(work / "bench.mjs")]


def _prepare_venv(name: str, work: Path) -> list[str]:
    """Make a virtualenv in ``work`` from ``<name>-requirements.txt``; the argv of its program.

    The program is ``<name>_bench.py`` in this folder, run by the virtualenv's Python.
    Reinstalled only when the requirements file changes.
    """
    requirements = HERE / f"{name}-requirements.txt"
    venv = work / "venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    marker = work / ".installed"
    stamp = _fingerprint(requirements)
    if not (marker.exists() and marker.read_text() == stamp and python.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        _run_install([sys.executable, "-m", "venv", str(venv)], work, f"python -m venv ({name})")
        _run_install(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
            work,
            f"pip install ({name})",
        )
        marker.write_text(stamp)
    return [str(python), str(HERE / f"{name}_bench.py")]


def prepare_saq(work: Path) -> list[str]:
    """A virtualenv with the pinned saq; the argv of saq_bench.py."""
    return _prepare_venv("saq", work)


def prepare_docket(work: Path) -> list[str]:
    """A virtualenv with the pinned pydocket; the argv of docket_bench.py."""
    return _prepare_venv("docket", work)


def prepare_streaq(work: Path) -> list[str]:
    """A virtualenv with the pinned streaq; the argv of streaq_bench.py."""
    return _prepare_venv("streaq", work)


def prepare_arq(work: Path) -> list[str]:
    """A virtualenv with the pinned arq; the argv of arq_bench.py."""
    return _prepare_venv("arq", work)


TASKSTORE_BENCH = HERE / "taskstore_bench.py"
RECOVERY_LEASES_MS = (500, 2000)
"""Leases of the recovery probe the ``taskstore`` entry runs after its throughput run."""


def _check_taskstore() -> None:
    """The project's package must import with this interpreter (nothing is installed)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import anyio, msgspec, redis"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        tail = probe.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PeerUnavailable(f"the project's dependencies do not import: {tail[0]}")


def prepare_taskstore(work: Path) -> list[str]:
    """This tree's store (``submit``, ``claim_many``, ``Lease.complete``); a recovery probe."""
    _check_taskstore()
    leases = ",".join(str(ms) for ms in RECOVERY_LEASES_MS)
    return [sys.executable, str(TASKSTORE_BENCH), "--recovery-lease-ms", leases]


def prepare_taskstore_worker(work: Path) -> list[str]:
    """This tree's ``run_worker`` (``concurrency=C`` per process) over the same store."""
    _check_taskstore()
    return [sys.executable, str(TASKSTORE_BENCH), "--variant", "worker"]


def prepare_taskstore_raw(work: Path) -> list[str]:
    """The same scripts sent by a plain redis-py client: the baseline of the store's own cost."""
    _check_taskstore()
    return [sys.executable, str(TASKSTORE_BENCH), "--variant", "raw"]


PEERS: dict[str, Peer] = {
    "bullmq": Peer("bullmq", prepare_bullmq),
    "saq": Peer("saq", prepare_saq),
    "docket": Peer("docket", prepare_docket),
    "streaq": Peer("streaq", prepare_streaq),
    "arq": Peer("arq", prepare_arq),
    "taskstore": Peer("taskstore", prepare_taskstore),
    "taskstore-worker": Peer("taskstore-worker", prepare_taskstore_worker),
    "taskstore-raw": Peer("taskstore-raw", prepare_taskstore_raw),
}


# ------------------------------------------------------------------- pure helpers
def parse_counts(text: str) -> list[int]:
    """``"1,4"`` -> ``[1, 4]``: positive integers, duplicates dropped, order kept."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"not a positive integer: {part!r}")
        if int(part) not in counts:
            counts.append(int(part))
    if not counts:
        raise ValueError("no count given")
    return counts


def parse_result(stdout: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of a peer's stdout, checked against REQUIRED."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BadResult("no output")
    try:
        record = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BadResult(f"last line is not JSON: {lines[-1][:80]!r}") from exc
    if not isinstance(record, dict):
        raise BadResult("last line is not a JSON object")
    for field, kind in REQUIRED.items():
        if field not in record:
            raise BadResult(f"missing field {field!r}")
        value = record[field]
        # bool is an int in Python: a count must not be a bool, a flag must be one
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BadResult(f"field {field!r} has the wrong type: {value!r}")
    return record


def failed_record(
    peer: str, jobs: int, processes: int, concurrency: int, error: str
) -> dict[str, Any]:
    """The record of a run that produced no valid output."""
    return {
        "peer": peer,
        "ok": False,
        "jobs": jobs,
        "processes": processes,
        "concurrency": concurrency,
        "add_seconds": None,
        "add_rate": None,
        "process_seconds": None,
        "process_rate": None,
        "completed": 0,
        "failed": 0,
        "worker_cpu_seconds": None,
        "redis_cpu_seconds": None,
        "versions": {},
        "settings": {},
        "error": error,
    }


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a peer at one worker-process count, over its repeats."""

    peer: str
    processes: int
    concurrency: int
    jobs: int
    runs: int
    ok_runs: int
    add_rate: float | None  # median over the runs that completed
    process_rate: float | None
    cpu_per_10k: float | None  # CPU seconds per 10,000 jobs: worker processes + Redis
    note: str


def summarize(records: Iterable[dict[str, Any]]) -> list[Row]:
    """Group records by (peer, processes), in first-seen order; medians of the ok runs."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["peer"], record["processes"]), []).append(record)
    rows = []
    for (peer, processes), group in groups.items():
        ok = [r for r in group if r["ok"]]
        notes = sorted({r["error"] for r in group if r["error"]})
        redelivered = sum(r.get("redelivered", 0) for r in group)
        if redelivered:
            notes.append(f"{redelivered} redelivered")
        rows.append(
            Row(
                peer=peer,
                processes=processes,
                concurrency=group[0]["concurrency"],
                jobs=group[0]["jobs"],
                runs=len(group),
                ok_runs=len(ok),
                add_rate=_median([r["add_rate"] for r in ok]),
                process_rate=_median([r["process_rate"] for r in ok]),
                cpu_per_10k=_median([cpu_per_10k(r) for r in ok]),
                note="; ".join(notes),
            )
        )
    return rows


def cpu_per_10k(record: dict[str, Any]) -> float | None:
    """CPU seconds per 10,000 jobs processed: the worker processes' and Redis's together.

    Both are measured over the processing phase (start signal to stop); None when the
    record lacks either or completed nothing.
    """
    worker, server = record.get("worker_cpu_seconds"), record.get("redis_cpu_seconds")
    if worker is None or server is None or not record["completed"]:
        return None
    return float((worker + server) * 10_000 / record["completed"])


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render_table(rows: Sequence[Row], skipped: dict[str, str]) -> str:
    """A Markdown table of the rows (rates in jobs/s, CPU seconds per 10,000 jobs), then one
    line per skipped peer."""
    header = [
        "peer",
        "processes",
        "concurrency",
        "jobs",
        "ok runs",
        "add /s",
        "process /s",
        "CPU s /10k jobs",
        "note",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row.peer,
            str(row.processes),
            str(row.concurrency),
            f"{row.jobs:,}",
            f"{row.ok_runs}/{row.runs}",
            _rate(row.add_rate),
            _rate(row.process_rate),
            "-" if row.cpu_per_10k is None else f"{row.cpu_per_10k:.2f}",
            row.note.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.extend(f"skipped {name}: {reason}" for name, reason in skipped.items())
    return "\n".join(lines)


OURS = ("taskstore", "taskstore-worker")
"""The project's entries that the ratios compare with every other peer."""


def comparisons(rows: Sequence[Row]) -> list[str]:
    """Processing-rate ratios per process count: each of ``OURS`` against each other entry.

    ``taskstore / bullmq`` (target >= 0.7 with 4 processes), ``taskstore / saq`` (target
    > 1), the other peers likewise, and ``taskstore / taskstore-raw`` (the store's own cost);
    ``taskstore-worker`` (``run_worker``) against the peers.
    """
    rates = {(row.peer, row.processes): row.process_rate for row in rows}
    peers = list(dict.fromkeys(row.peer for row in rows))
    lines = []
    for (peer, processes), ours in rates.items():
        if peer not in OURS or ours is None:
            continue
        for other in peers:
            theirs = rates.get((other, processes))
            if other in OURS or (other == "taskstore-raw" and peer != "taskstore") or not theirs:
                continue
            lines.append(f"{peer} / {other}, {processes} process(es): {ours / theirs:.2f}")
    return lines


def recovery_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per recovery probe of the ``taskstore`` records: kill -> next claim vs lease."""
    lines = []
    for record in records:
        for probe in record.get("recovery") or []:
            if "kill_to_next_claim_ms" not in probe:
                lines.append(f"recovery, lease {probe['lease_ms']} ms: {probe.get('error')}")
                continue
            lines.append(
                f"recovery, lease {probe['lease_ms']} ms: kill -> next claim "
                f"{probe['kill_to_next_claim_ms']:.0f} ms (lease left at the kill "
                f"{probe['lease_left_at_kill_ms']:.0f} ms; claimed "
                f"{probe['after_lease_deadline_ms']:.0f} ms after its deadline)"
            )
    return lines


# ---------------------------------------------------------------------- the run
def _leftover_keys(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


def run_one(
    peer: str, argv: list[str], url: str, jobs: int, processes: int, concurrency: int, timeout: int
) -> dict[str, Any]:
    """Run one peer once; its record, with the leftover-key check added."""
    prefix = f"peers-{secrets.token_hex(4)}-{peer}-p{processes}"
    command = [
        *argv,
        *("--redis-url", url, "--jobs", str(jobs), "--processes", str(processes)),
        *("--concurrency", str(concurrency), "--prefix", prefix, "--timeout", str(timeout)),
    ]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + GRACE,
            check=False,
        )
        record = parse_result(proc.stdout)
        if proc.returncode != 0 and record["ok"]:
            record["ok"] = False
            record["error"] = f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        record = failed_record(peer, jobs, processes, concurrency, "killed: did not stop in time")
    except BadResult as exc:
        stderr = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        error = f"{exc} (exit {proc.returncode}) {stderr[0]}".strip()
        record = failed_record(peer, jobs, processes, concurrency, error)
    record["leftover_keys"] = _leftover_keys(url, prefix)
    return record


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from taskstore_redis.testing import redis_server

    with redis_server() as server:
        yield server.url


def _redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/peers/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per run (default 20,000)")
    p.add_argument("--processes", type=parse_counts, default=[1, 4], help="e.g. 1,4")
    p.add_argument("--concurrency", type=int, default=10, help="jobs in flight per process")
    p.add_argument("--peers", default=",".join(PEERS), help=f"from {', '.join(PEERS)}")
    p.add_argument("--repeat", type=int, default=1, help="runs per peer and process count")
    p.add_argument("--redis-url", help="use this Redis instead of a throwaway one")
    p.add_argument("--json", type=Path, help="write every record and the settings here")
    p.add_argument("--timeout", type=int, default=300, help="seconds per run (default 300)")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder")
    args = p.parse_args(argv)
    for name in ("jobs", "concurrency", "repeat", "timeout"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    args.peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in args.peers if name not in PEERS]
    if unknown or not args.peers:
        p.error(f"--peers: unknown {', '.join(unknown) or '(none given)'}")
    return args


def main(argv: Sequence[str]) -> int:
    """Install the peers, run them, print the table; 0 when every run that ran was ok."""
    args = _parse_args(argv)
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    commands: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for name in args.peers:
        print(f"preparing {name} ...", file=sys.stderr, flush=True)
        try:
            commands[name] = PEERS[name].prepare(args.work / name)
        except PeerUnavailable as exc:
            skipped[name] = str(exc)
            print(f"skipped {name}: {exc}", file=sys.stderr, flush=True)
    records: list[dict[str, Any]] = []
    redis_version = None
    with _redis(args.redis_url) as url:
        redis_version = _redis_version(url)
        # interleaved (peer after peer at each count) so that drifting load hits all alike
        for repeat in range(args.repeat):
            for processes in args.processes:
                for name, command in commands.items():
                    print(
                        f"{name}: {args.jobs:,} jobs, {processes} process(es) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    t0 = time.monotonic()
                    record = run_one(
                        name, command, url, args.jobs, processes, args.concurrency, args.timeout
                    )
                    record["repeat"] = repeat
                    record["wall_seconds"] = time.monotonic() - t0
                    records.append(record)
    document = {
        "benchmark": "work-queue peers",
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            "jobs": args.jobs,
            "processes": args.processes,
            "concurrency": args.concurrency,
            "repeat": args.repeat,
            "timeout": args.timeout,
            "redis": "given --redis-url" if args.redis_url else "throwaway redis-server",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": load,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "redis": redis_version,
        },
        "skipped": skipped,
        "results": records,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    rows = summarize(records)
    print(render_table(rows, skipped))
    for line in [*comparisons(rows), *recovery_lines(records)]:
        print(line)
    if load is not None and load > (os.cpu_count() or 1) / 2:
        print(f"warning: load average {load:.1f} at the start: figures are indicative only")
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
