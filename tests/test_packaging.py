"""The wheel and the sdist carry the Lua scripts and the dashboard's files; an installed wheel runs
a task on Redis."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the wheel and the sdist, installs into a fresh virtualenv

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(str(path.relative_to(ROOT / "lua")) for path in (ROOT / "lua").rglob("*.lua"))
"""The scripts and the helpers they include (``includes/<name>.lua``)."""
DASHBOARD_FILES = sorted(
    str(path.relative_to(ROOT))
    for folder in ("templates", "static")
    for path in (ROOT / "taskstore_redis" / "dashboard" / folder).iterdir()
)
"""The dashboard's templates, script and style sheet, read from the package at run time."""

RUN_A_TASK = """
import sys
import taskstore_redis as ts

with ts.GenericTaskStore.from_url(sys.argv[1], prefix="wheeltest") as store:
    record = store.create("tools/call", owner_id="owner")
    task_id = record.task.task_id
    store.complete_with_result(task_id, "completed", None, {"ok": True}, owner_id="owner")
    assert store.get_result(task_id, owner_id="owner") == {"ok": True}
    print(ts.__file__)
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", out, ROOT)
    return out


def test_the_wheel_carries_every_script(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    prefix = "taskstore_redis/lua/"
    assert sorted(n.removeprefix(prefix) for n in names if n.startswith(prefix)) == SCRIPTS
    assert "taskstore_redis/py.typed" in names
    assert DASHBOARD_FILES and set(DASHBOARD_FILES) <= set(names)


def test_the_sdist_carries_every_script(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert sorted(n.split("/lua/", 1)[1] for n in names if "/lua/" in n and n.endswith(".lua")) == (
        SCRIPTS
    )
    assert {name.split("/", 1)[1] for name in names} >= set(DASHBOARD_FILES)


@pytest.mark.redis
def test_an_installed_wheel_runs_a_task_through_redis(
    dist: Path, tmp_path: Path, redis_url: str
) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel)
    location = run(python, "-c", RUN_A_TASK, redis_url, cwd=tmp_path)
    assert str(venv) in location


SUBMIT_ONE = """
import sys
import taskstore_redis as ts

with ts.GenericTaskStore.from_url(sys.argv[1], prefix="wheelworker") as store:
    record = store.submit("tools/call", {"n": 21}, owner_id="owner")
    print(record.task.task_id)
"""


@pytest.mark.redis
def test_an_installed_wheel_runs_the_worker_and_queues_commands(
    dist: Path, tmp_path: Path, redis_url: str
) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel, "rich")
    (tmp_path / "jobs.py").write_text("def double(lease):\n    return 2 * lease.params['n']\n")
    task_id = run(python, "-c", SUBMIT_ONE, redis_url, cwd=tmp_path).strip()
    command = [str(venv / "bin" / "taskstore-redis")]
    where = ["--redis-url", redis_url, "--prefix", "wheelworker"]
    worker = subprocess.Popen(
        [str(venv / "bin" / "taskstore-redis"), "worker", "jobs:double", *where],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait = f"""
import taskstore_redis as ts
with ts.GenericTaskStore.from_url({redis_url!r}, prefix="wheelworker") as store:
    print(store.wait_for_result({task_id!r}, owner_id="owner", timeout=60))
"""
        assert run(python, "-c", wait, cwd=tmp_path).strip() == "42"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    shown = json.loads(run(command[0], "queues", "--json", *where, cwd=tmp_path))
    assert [(one["queue"], one["completed"]) for one in shown] == [("default", 1)]
