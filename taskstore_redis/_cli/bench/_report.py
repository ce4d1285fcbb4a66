"""The targets, the terminal tables, the JSON document and the plot of a benchmark run."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ._costs import RoundTrips
from ._settings import OPERATIONS, Layout, Settings
from ._stats import Figures
from ._suite import ListScale, RunResult

SCHEMA = "taskstore-redis-bench/1"
RATIO_TARGET = 0.85
SCALING_TARGET = 3.0
LIST_TARGET = 2.0
MEMORY_TARGET = 600
SEQUENTIAL, CONCURRENT = Layout(0, 1), Layout(0, 32)
NOT_JUDGED = "--quick sizes are too small for the targets, which a full run judges"


@dataclass(frozen=True)
class Check:
    """One target: what was measured against it, and whether it was met."""

    name: str
    goal: str
    value: float | None
    passed: bool | None
    """None: not judged on this backend."""
    detail: str

    def as_json(self) -> dict[str, object]:
        """The check as plain JSON."""
        return {
            "name": self.name,
            "goal": self.goal,
            "value": None if self.value is None else round(self.value, 4),
            "passed": self.passed,
            "detail": self.detail,
        }


# --- targets -------------------------------------------------------------------------------


def checks(run: RunResult, judged: bool = True) -> list[Check]:
    """Every target, judged on ``run`` (measured only, ``passed`` None, unless ``judged``)."""
    found = [_ratio_check(run), _scaling_check(run), _list_check(run.list_scale)]
    found.append(_memory_check(run))
    if judged:
        return found
    return [replace(check, passed=None, detail=f"not judged: {NOT_JUDGED}") for check in found]


def _ratio_check(run: RunResult) -> Check:
    name, goal = "store/raw throughput", f">= {RATIO_TARGET} in every scenario"
    ratios = [(s, s.ratio) for s in run.scenarios if s.ratio is not None]
    if not ratios:
        return Check(
            name=name, goal=goal, value=None, passed=None, detail="no raw baseline on this backend"
        )
    misses = [f"{s.operation} {s.layout.label} {r:.2f}" for s, r in ratios if r < RATIO_TARGET]
    detail = f"lowest of {len(ratios)}" + (f"; below: {', '.join(misses)}" if misses else "")
    return Check(
        name=name, goal=goal, value=min(r for _, r in ratios), passed=not misses, detail=detail
    )


def scaling_factors(run: RunResult) -> dict[str, float]:
    """Per operation: store throughput at 1x32 over 1x1 (when both were run)."""
    by_key = {(s.operation, s.layout): s.store.throughput for s in run.scenarios}
    factors = {}
    for operation in OPERATIONS:
        sequential = by_key.get((operation, SEQUENTIAL))
        concurrent = by_key.get((operation, CONCURRENT))
        if sequential and concurrent is not None:
            factors[operation] = concurrent / sequential
    return factors


def _scaling_check(run: RunResult) -> Check:
    name, goal = "1x32 vs 1x1 (store)", f">= {SCALING_TARGET:g}x for every operation"
    factors = scaling_factors(run)
    if not factors:
        return Check(name=name, goal=goal, value=None, passed=None, detail="1x1 or 1x32 not run")
    misses = [f"{op} {f:.1f}x" for op, f in factors.items() if f < SCALING_TARGET]
    detail = "lowest operation" + (f"; below: {', '.join(misses)}" if misses else "")
    judged = run.mode == "standalone"
    if not judged:
        detail += "; judged on standalone Redis only"
    return Check(
        name=name,
        goal=goal,
        value=min(factors.values()),
        passed=not misses if judged else None,
        detail=detail,
    )


def _list_check(scale: ListScale | None) -> Check:
    name = "list page, large vs small owner"
    if scale is None:
        return Check(
            name=name, goal=f"<= {LIST_TARGET:g}x", value=None, passed=None, detail="not run"
        )
    small, large = scale.sizes
    goal = f"p50 at {large:,} tasks <= {LIST_TARGET:g}x p50 at {small:,}"
    return Check(
        name=name,
        goal=goal,
        value=scale.ratio,
        passed=scale.ratio <= LIST_TARGET,
        detail="store, sequential",
    )


def _memory_check(run: RunResult) -> Check:
    name, goal = "memory per minimal task", f"used_memory delta <= {MEMORY_TARGET} B"
    if not run.memory:
        return Check(
            name=name, goal=goal, value=None, passed=None, detail="no Redis memory on this backend"
        )
    worst = max(run.memory, key=lambda m: m.used_memory_delta_per_task)
    value = worst.used_memory_delta_per_task
    detail = f"worst layout ({worst.tasks_per_owner:,} tasks per owner), hash + key + index"
    return Check(name=name, goal=goal, value=value, passed=value <= MEMORY_TARGET, detail=detail)


# --- the terminal ----------------------------------------------------------------------------


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "[dim]n/a[/dim]"
    return "[green]PASS[/green]" if passed else "[red]MISS[/red]"


def _latency(figures: Figures | None) -> str:
    if figures is None:
        return "-"
    return f"{figures.p50_ms:.3f} / {figures.p95_ms:.3f} / {figures.p99_ms:.3f}"


def _rate(figures: Figures | None) -> str:
    return "-" if figures is None else f"{figures.throughput:,.0f}"


def render(console: Console, run: RunResult, judged: bool = True) -> None:
    """Print the tables of one backend; with the targets' verdicts only if ``judged``."""
    title = run.mode if run.server is None else f"{run.mode}, Redis {run.server.version}"
    console.print(_scenario_table(run, title, judged))
    if run.round_trips:
        console.print(_round_trip_table(run.round_trips, run.round_trips_not_remembered))
    if run.memory:
        console.print(_memory_table(run))
    if run.list_scale:
        console.print(_list_table(run.list_scale))
    if judged:
        console.print(_check_table(run, title))
    else:
        console.print(f"targets: {NOT_JUDGED}", style="dim", markup=False)
    for note in run.notes:
        console.print(f"[dim]note: {note}[/dim]")


def _scenario_table(run: RunResult, title: str, judged: bool) -> Table:
    baseline = any(scenario.raw is not None for scenario in run.scenarios)
    table = Table(
        title=f"Operations ({title}); layout 1xC: C coroutines in this process, "
        "Nw xC: N worker processes of C coroutines each; latency p50 / p95 / p99 ms"
    )
    table.add_column("operation")
    table.add_column("layout")
    table.add_column("store ops/s", justify="right")
    table.add_column("store latency")
    if baseline:
        table.add_column("raw ops/s", justify="right")
        table.add_column("raw latency")
        table.add_column("store/raw", justify="right")
        if judged:
            table.add_column(f">= {RATIO_TARGET}")
    for scenario in run.scenarios:
        row = [
            scenario.operation,
            scenario.layout.label,
            _rate(scenario.store),
            _latency(scenario.store),
        ]
        if baseline:
            ratio = scenario.ratio
            row += [
                _rate(scenario.raw),
                _latency(scenario.raw),
                "-" if ratio is None else f"{ratio:.2f}",
            ]
            if judged:
                row.append(_verdict(None if ratio is None else ratio >= RATIO_TARGET))
        table.add_row(*row)
    return table


def _commands(counts: RoundTrips | None) -> str:
    if counts is None:
        return "-"
    return " + ".join(f"{n:g} {name}" for name, n in counts.commands.items())


def _round_trip_table(
    counts: dict[str, dict[str, RoundTrips]], not_remembered: RoundTrips | None
) -> Table:
    table = Table(title="Round trips per operation (standalone, one caller, counted client-side)")
    for column in ("operation", "store", "store commands", "raw", "raw commands"):
        table.add_column(column)
    rows = [
        (operation, sides.get("store"), sides.get("raw")) for operation, sides in counts.items()
    ]
    if not_remembered is not None:
        rows.append(("mutation of a task not remembered", not_remembered, None))
    for operation, store, raw in rows:
        table.add_row(
            operation,
            "-" if store is None else f"{store.round_trips:g}",
            _commands(store),
            "-" if raw is None else f"{raw.round_trips:g}",
            _commands(raw),
        )
    return table


def _memory_table(run: RunResult) -> Table:
    table = Table(title="Redis memory per minimal task (bytes)")
    for column in ("tasks", "per owner", "used_memory delta", "MEMORY USAGE hash", "index"):
        table.add_column(column, justify="right")
    for figures in run.memory or []:
        table.add_row(
            f"{figures.tasks:,}",
            f"{figures.tasks_per_owner:,}",
            f"{figures.used_memory_delta_per_task:,.0f}",
            f"{figures.hash_memory_usage_mean:,.0f}",
            f"{figures.index_memory_usage_per_task:,.0f}",
        )
    return table


def _list_table(scale: ListScale) -> Table:
    table = Table(title=f"First list page of {scale.page_size}, one owner, one caller")
    for column in ("tasks", "store pages/s", "store latency", "raw pages/s", "raw latency"):
        table.add_column(column, justify="right" if "/s" in column or column == "tasks" else "left")
    for index, size in enumerate(scale.sizes):
        raw = None if scale.raw is None else scale.raw[index]
        store = scale.store[index]
        table.add_row(f"{size:,}", _rate(store), _latency(store), _rate(raw), _latency(raw))
    return table


def _check_table(run: RunResult, title: str) -> Table:
    table = Table(title=f"Targets ({title})")
    for column in ("target", "goal", "measured", "result", "detail"):
        table.add_column(column)
    for check in checks(run):
        value = "-" if check.value is None else f"{check.value:,.2f}"
        table.add_row(check.name, check.goal, value, _verdict(check.passed), check.detail)
    return table


# --- JSON --------------------------------------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Python, library versions, CPUs and the load when the run started."""
    import redis.utils

    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "taskstore_redis": _version("taskstore-redis"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "hiredis_parser": bool(redis.utils.HIREDIS_AVAILABLE),
        "msgspec": _version("msgspec"),
        "anyio": _version("anyio"),
    }


def _scenario_json(run: RunResult) -> list[dict[str, object]]:
    return [
        {
            "operation": s.operation,
            "layout": {
                "label": s.layout.label,
                "workers": s.layout.workers,
                "coroutines": s.layout.coroutines,
                "callers": s.layout.callers,
            },
            "store": s.store.as_json(),
            "raw": None if s.raw is None else s.raw.as_json(),
            "ratio": None if s.ratio is None else round(s.ratio, 4),
        }
        for s in run.scenarios
    ]


def _list_json(scale: ListScale | None) -> dict[str, object] | None:
    if scale is None:
        return None
    return {
        "page_size": scale.page_size,
        "sizes": list(scale.sizes),
        "store": [figures.as_json() for figures in scale.store],
        "raw": None if scale.raw is None else [figures.as_json() for figures in scale.raw],
        "ratio_p50": round(scale.ratio, 4),
    }


def run_json(run: RunResult, judged: bool = True) -> dict[str, object]:
    """Every figure of one backend as plain JSON (targets judged only if ``judged``)."""
    round_trips = None
    if run.round_trips is not None:
        round_trips = {
            operation: {side: counts.as_json() for side, counts in sides.items()}
            for operation, sides in run.round_trips.items()
        }
    return {
        "mode": run.mode,
        "server": None if run.server is None else run.server.as_json(),
        "scenarios": _scenario_json(run),
        "round_trips": round_trips,
        "round_trips_not_remembered": (
            None
            if run.round_trips_not_remembered is None
            else run.round_trips_not_remembered.as_json()
        ),
        "memory": None if run.memory is None else [m.as_json() for m in run.memory],
        "list_scale": _list_json(run.list_scale),
        "scaling_1x32_over_1x1": {op: round(f, 4) for op, f in scaling_factors(run).items()},
        "targets": [check.as_json() for check in checks(run, judged)],
        "notes": run.notes,
    }


def document(
    settings: Settings, env: dict[str, Any], runs: list[RunResult], warnings: list[str]
) -> dict[str, object]:
    """The whole JSON document of a benchmark run."""
    return {
        "schema": SCHEMA,
        "settings": settings.as_json(),
        "environment": env,
        "warnings": warnings,
        "runs": [run_json(run, not settings.quick) for run in runs],
    }


# --- the plot ----------------------------------------------------------------------------------


def plotting_available() -> bool:
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(path: str, runs: list[RunResult]) -> None:
    """Draw throughput per operation and layout (store and raw), and the list pages, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2 * len(runs), 4, figsize=(18, 7 * len(runs)), squeeze=False)
    for number, run in enumerate(runs):
        panels = list(axes[2 * number : 2 * number + 2].flatten())
        for operation, panel in zip(OPERATIONS, panels, strict=False):
            _throughput_panel(panel, run, operation)
        if run.list_scale is not None:
            _list_panel(panels[len(OPERATIONS)], run.mode, run.list_scale)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _bars(panel: Any, labels: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [x + (index - (len(series) - 1) / 2) * width for x in range(len(labels))]
        panel.bar(positions, values, width, label=name)
    panel.set_xticks(range(len(labels)), labels, rotation=30)
    panel.set_ylabel(ylabel)
    panel.legend(fontsize="small")


def _throughput_panel(panel: Any, run: RunResult, operation: str) -> None:
    scenarios = [s for s in run.scenarios if s.operation == operation]
    series = {"store": [s.store.throughput for s in scenarios]}
    if all(s.raw is not None for s in scenarios):
        series["raw"] = [s.raw.throughput for s in scenarios if s.raw is not None]
    _bars(panel, [s.layout.label for s in scenarios], series, "ops/s")
    panel.set_title(f"{run.mode}: {operation}")


def _list_panel(panel: Any, mode: str, scale: ListScale) -> None:
    series = {"store": [figures.p50_ms for figures in scale.store]}
    if scale.raw is not None:
        series["raw"] = [figures.p50_ms for figures in scale.raw]
    _bars(panel, [f"{size:,} tasks" for size in scale.sizes], series, "p50 ms")
    panel.set_title(f"{mode}: first list page of {scale.page_size}")
