"""The wheel and the sdist carry the Lua scripts; an installed wheel runs a task on Redis."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path.name for path in (ROOT / "lua").glob("*.lua"))

RUN_A_TASK = """
import sys
import taskstore_redis as ts

with ts.GenericTaskStore.from_url(sys.argv[1], prefix="wheeltest") as store:
    record = store.create("owner", "tools/call")
    store.complete_with_result(record.task.task_id, "owner", "completed", None, {"ok": True})
    assert store.get_result(record.task.task_id, "owner") == {"ok": True}
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
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("taskstore_redis/lua/")) == (
        SCRIPTS
    )
    assert "taskstore_redis/py.typed" in names


def test_the_sdist_carries_every_script(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert sorted(n.rsplit("/", 1)[1] for n in names if "/lua/" in n) == SCRIPTS


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
