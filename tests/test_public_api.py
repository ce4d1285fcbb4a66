"""The public API: what ``taskstore_redis`` and ``taskstore_redis.asyncio`` export.

The blocking and the async module export the same names. Types, settings and
errors are the very same objects in both; only the stores, backends and their
protocols differ, the async ones being awaitable and the blocking ones not.
The top level holds what an application uses; what a backend takes and returns
is in ``taskstore_redis.backend`` (and its async twin ``taskstore_redis.asyncio.backend``).
"""

from __future__ import annotations
import __future__

import importlib.metadata
import inspect
from types import ModuleType
from typing import Any

import pytest

import taskstore_redis
import taskstore_redis.asyncio
import taskstore_redis.asyncio.backend
import taskstore_redis.backend
from taskstore_redis import TaskPage, TaskRecord, TaskStatus

MODULES = [
    pytest.param(module, id=module.__name__)
    for module in (
        taskstore_redis,
        taskstore_redis.asyncio,
        taskstore_redis.backend,
        taskstore_redis.asyncio.backend,
    )
]

BACKEND_PROTOCOLS = {"QueueBackend", "QueueWatch", "StorageBackend", "TaskWatch"}

STORE_OPERATIONS = {
    "create",
    "get",
    "update_status",
    "set_variables",
    "set_result",
    "get_result",
    "complete_with_result",
    "list",
    "cancel",
    "cleanup_expired",
    "wait",
    "wait_for_result",
    "delete",
    "set_status_message",
}
"""The operations of a task store are these methods and ``config``."""

WATCH_METHODS = {"watch"}
"""Backend methods that return an (async) context manager rather than a coroutine."""

OWNER = "alice"


def public_members(cls: type) -> dict[str, Any]:
    """The public attributes a class defines itself (not inherited)."""
    return {name: value for name, value in vars(cls).items() if not name.startswith("_")}


def public_functions(cls: type) -> set[str]:
    """Names of the plain public methods a class defines itself."""
    return {name for name, value in public_members(cls).items() if inspect.isfunction(value)}


def exported_objects(module: ModuleType) -> list[tuple[str, Any]]:
    return [(name, getattr(module, name)) for name in module.__all__]


# --- __all__ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_every_public_module_lists_its_names_in_all(module: ModuleType) -> None:
    names = module.__all__
    assert isinstance(names, list)
    assert len(names) == len(set(names)), "a name is listed twice"
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_of_a_module_is_in_all(module: ModuleType) -> None:
    unlisted = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)  # subpackages, e.g. taskstore_redis.asyncio
        and value is not __future__.annotations
        and name not in module.__all__
    ]
    assert unlisted == []


TWINS = [
    pytest.param(taskstore_redis, taskstore_redis.asyncio, id="taskstore_redis"),
    pytest.param(taskstore_redis.backend, taskstore_redis.asyncio.backend, id="backend"),
]


@pytest.mark.parametrize(("sync_module", "async_module"), TWINS)
def test_sync_and_async_export_the_same_names(
    sync_module: ModuleType, async_module: ModuleType
) -> None:
    assert set(sync_module.__all__) == set(async_module.__all__)


@pytest.mark.parametrize(("sync_module", "async_module"), TWINS)
def test_types_settings_and_errors_are_the_same_objects_in_both_apis(
    sync_module: ModuleType, async_module: ModuleType
) -> None:
    for name, sync_value in exported_objects(sync_module):
        async_value = getattr(async_module, name)
        if sync_value is async_value:
            continue
        # only the sync/async twins differ, and they live in twin modules
        assert sync_value.__module__.startswith("taskstore_redis._sync."), name
        assert async_value.__module__ == sync_value.__module__.replace("._sync.", "._async.")
    for name in ("TaskRecord", "TaskStatus", "StoreConfig", "TaskNotFound", "TRANSITIONS"):
        assert getattr(taskstore_redis, name) is getattr(taskstore_redis.asyncio, name)
    for name in ("TaskKey", "NewTask", "VersionedRecord"):
        assert getattr(taskstore_redis.backend, name) is getattr(
            taskstore_redis.asyncio.backend, name
        )


def test_the_stores_and_backends_differ_between_the_two_apis() -> None:
    for name in ("GenericTaskStore", "InMemoryBackend", "RedisBackend", "TaskStore"):
        assert getattr(taskstore_redis, name) is not getattr(taskstore_redis.asyncio, name)
    for name in BACKEND_PROTOCOLS:
        assert getattr(taskstore_redis.backend, name) is not getattr(
            taskstore_redis.asyncio.backend, name
        )


@pytest.mark.parametrize(
    ("top", "backend"),
    [
        pytest.param(taskstore_redis, taskstore_redis.backend, id="sync"),
        pytest.param(taskstore_redis.asyncio, taskstore_redis.asyncio.backend, id="async"),
    ],
)
def test_the_top_level_holds_what_an_application_uses(top: ModuleType, backend: ModuleType) -> None:
    for name in ("GenericTaskStore", "RedisBackend", "InMemoryBackend", "Lease", "run_worker"):
        assert name in top.__all__
    assert "JSONValue" in top.__all__
    assert set(top.__all__).isdisjoint(backend.__all__)
    assert set(backend.__all__) >= BACKEND_PROTOCOLS


@pytest.mark.parametrize("name", ["NewTask", "TaskKey", "StorageBackend", "TaskWatch"])
@pytest.mark.parametrize("top", [taskstore_redis, taskstore_redis.asyncio], ids=["sync", "async"])
def test_a_name_that_moved_to_backend_is_refused_with_its_new_home(
    top: ModuleType, name: str
) -> None:
    with pytest.raises(
        AttributeError, match=rf"^{top.__name__}\.{name} moved to {top.__name__}\.backend$"
    ):
        getattr(top, name)
    assert not hasattr(top, name)
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        top.NoSuchName  # noqa: B018 - the access is the test


def test_the_package_version_matches_the_installed_distribution() -> None:
    assert taskstore_redis.__version__ == importlib.metadata.version("taskstore-redis")


# --- docstrings ------------------------------------------------------------------------------


def undocumented(module: ModuleType) -> list[str]:
    """What ``module`` exports, and the module itself, that has no docstring."""
    undocumented = [] if (module.__doc__ or "").strip() else [module.__name__]
    for name, value in exported_objects(module):
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not (value.__doc__ or "").strip():
            undocumented.append(name)
        if inspect.isclass(value):
            for member_name, member in public_members(value).items():
                function = member.__func__ if isinstance(member, classmethod) else member
                documentable = inspect.isfunction(function) or isinstance(function, property)
                if documentable and not (function.__doc__ or "").strip():
                    undocumented.append(f"{name}.{member_name}")
    return undocumented


@pytest.mark.parametrize("module", MODULES)
def test_every_public_module_class_and_function_has_a_docstring(module: ModuleType) -> None:
    assert undocumented(module) == []


# --- sync returns values, async returns coroutines ---------------------------------------


def test_the_task_store_protocol_has_its_operations() -> None:
    for module in (taskstore_redis, taskstore_redis.asyncio):
        members = public_members(module.TaskStore)
        assert isinstance(members["config"], property)
        assert public_functions(module.TaskStore) == STORE_OPERATIONS


@pytest.mark.parametrize(
    ("store_class", "sync_protocol", "async_protocol"),
    [
        ("GenericTaskStore", taskstore_redis.TaskStore, taskstore_redis.asyncio.TaskStore),
        (
            "InMemoryBackend",
            taskstore_redis.backend.StorageBackend,
            taskstore_redis.asyncio.backend.StorageBackend,
        ),
    ],
)
def test_async_operations_are_coroutine_functions_and_sync_ones_are_not(
    store_class: str, sync_protocol: type, async_protocol: type
) -> None:
    async_names = public_functions(async_protocol)
    sync_names = public_functions(sync_protocol)
    assert sync_names == {"close" if name == "aclose" else name for name in async_names}
    async_class = getattr(taskstore_redis.asyncio, store_class)
    sync_class = getattr(taskstore_redis, store_class)
    for name in async_names - WATCH_METHODS | {"aclose"}:
        assert inspect.iscoroutinefunction(getattr(async_class, name)), name
    for name in async_names & WATCH_METHODS:
        watch_class = inspect.get_annotations(getattr(async_class, name), eval_str=True)["return"]
        assert inspect.iscoroutinefunction(watch_class.__aenter__), name
        assert inspect.iscoroutinefunction(watch_class.wait), name
    for name in sync_names | {"close"}:
        assert callable(getattr(sync_class, name)), name
        assert not inspect.iscoroutinefunction(getattr(sync_class, name)), name


def test_the_async_store_is_an_async_context_manager_and_the_sync_one_a_plain_one() -> None:
    for name in ("__aenter__", "__aexit__"):
        assert inspect.iscoroutinefunction(getattr(taskstore_redis.asyncio.GenericTaskStore, name))
    for name in ("__enter__", "__exit__"):
        assert not inspect.iscoroutinefunction(getattr(taskstore_redis.GenericTaskStore, name))


def test_the_stores_satisfy_their_protocols() -> None:
    for module, protocols in [
        (taskstore_redis, taskstore_redis.backend),
        (taskstore_redis.asyncio, taskstore_redis.asyncio.backend),
    ]:
        backend = module.InMemoryBackend()
        assert isinstance(backend, protocols.StorageBackend)
        assert isinstance(module.GenericTaskStore(backend), module.TaskStore)


def test_the_sync_store_returns_plain_values() -> None:
    with taskstore_redis.GenericTaskStore(taskstore_redis.InMemoryBackend()) as store:
        results: list[Any] = []
        record = store.create("tools/call", owner_id=OWNER)
        task_id = record.task.task_id
        other_id = store.create("tools/call", owner_id=OWNER).task.task_id
        results.append(record)
        results.append(store.get(task_id, owner_id=OWNER))
        results.append(store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER))
        results.append(store.set_variables(task_id, {"a": 1}, owner_id=OWNER))
        store.set_result(task_id, "draft", owner_id=OWNER)
        results.append(
            store.complete_with_result(task_id, "completed", None, "done", owner_id=OWNER)
        )
        results.append(store.cancel(other_id, owner_id=OWNER))
        assert all(isinstance(result, TaskRecord) for result in results)
        assert store.get_result(task_id, owner_id=OWNER) == "done"
        page = store.list(owner_id=OWNER)
        assert isinstance(page, TaskPage)
        assert len(page.tasks) == 2
        assert store.cleanup_expired() == 0
        assert not any(inspect.isawaitable(result) for result in [*results, page])


@pytest.mark.anyio
async def test_the_async_store_returns_coroutines() -> None:
    store = taskstore_redis.asyncio.GenericTaskStore(taskstore_redis.asyncio.InMemoryBackend())
    pending = store.create("tools/call", owner_id=OWNER)
    assert inspect.iscoroutine(pending)
    record = await pending
    assert isinstance(record, TaskRecord)
    reading = store.get(record.task.task_id, owner_id=OWNER)
    assert inspect.iscoroutine(reading)
    assert await reading == record
    closing = store.aclose()
    assert inspect.iscoroutine(closing)
    await closing
