"""Fixtures: every contract test runs on every backend, for the async and the sync store.

Backends: ``memory``; ``redis``, a throwaway standalone server; ``cluster``, a
throwaway Redis Cluster of 3 primaries. Servers come from
``taskstore_redis.testing`` (env vars, else ``redis-server`` on PATH, else
Docker); when none can be had the Redis tests fail and say what to install.
Each test gets its own key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import metadata
from typing import Any

import pytest

import taskstore_redis
import taskstore_redis.asyncio
import taskstore_redis.asyncio.backend
import taskstore_redis.backend
from taskstore_redis import SecurityConfig, StoreConfig
from taskstore_redis.testing import cluster_url_for_tests, redis_url_for_tests


def _mcp_sdk() -> str:
    """The MCP SDK installed here, as ``mcp 1.26.0`` or ``no mcp``."""
    try:
        return f"mcp {metadata.version('mcp')}"
    except metadata.PackageNotFoundError:
        return "no mcp"


MCP_SDK = _mcp_sdk()
MCP1_TESTS_RUN = re.fullmatch(r"mcp 1\..*", MCP_SDK) is not None
"""Whether tests/mcp1 is collected: the MCP SDK 1.x adapter's tests need the SDK 1.x, which
cannot be installed beside the SDK 2.x of the ``test`` extra. They run in a virtualenv of
their own: ``pip install -e '.[test-mcp1]'`` then ``pytest tests/mcp1``."""

collect_ignore = [] if MCP1_TESTS_RUN else ["mcp1"]


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether the MCP SDK 1.x tests (tests/mcp1) are collected, and why."""
    if MCP1_TESTS_RUN:
        return f"tests/mcp1 (the MCP SDK 1.x adapter, taskstore_redis.mcp1): collected, {MCP_SDK}"
    return (
        f"tests/mcp1 (the MCP SDK 1.x adapter, taskstore_redis.mcp1): not collected, it needs "
        f"the MCP SDK 1.x ({MCP_SDK} here); run it in a virtualenv with "
        "pip install -e '.[test-mcp1]': pytest tests/mcp1"
    )


BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]

AsyncStoreFactory = Callable[..., taskstore_redis.asyncio.GenericTaskStore]
SyncStoreFactory = Callable[..., taskstore_redis.GenericTaskStore]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a standalone Redis for the whole test session."""
    with redis_url_for_tests() as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """URL of one node of a 3-primary Redis Cluster for the whole test session."""
    with cluster_url_for_tests() as url:
        yield url


@pytest.fixture
def key_prefix() -> str:
    """A key prefix of this test's own."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def backend_url(backend_kind: str, request: pytest.FixtureRequest) -> str | None:
    """The server URL of the parametrized backend (None for memory)."""
    if backend_kind == "memory":
        return None
    url: str = request.getfixturevalue("redis_url" if backend_kind == "redis" else "cluster_url")
    return url


def _security(security: SecurityConfig | None) -> SecurityConfig:
    return security if security is not None else SecurityConfig()


@pytest.fixture
async def async_make_store(
    backend_url: str | None, key_prefix: str
) -> AsyncIterator[AsyncStoreFactory]:
    """Build async stores that share one fresh, empty storage of the parametrized backend."""
    stores: list[taskstore_redis.asyncio.GenericTaskStore] = []
    memory = taskstore_redis.asyncio.InMemoryBackend()

    def make(
        config: StoreConfig | None = None, security: SecurityConfig | None = None, **_: Any
    ) -> taskstore_redis.asyncio.GenericTaskStore:
        backend: taskstore_redis.asyncio.backend.StorageBackend = memory
        if backend_url is not None:
            backend = taskstore_redis.asyncio.RedisBackend.from_url(backend_url, prefix=key_prefix)
        store = taskstore_redis.asyncio.GenericTaskStore(backend, config, _security(security))
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


@pytest.fixture
def sync_make_store(backend_url: str | None, key_prefix: str) -> Iterator[SyncStoreFactory]:
    """Build sync stores that share one fresh, empty storage of the parametrized backend."""
    stores: list[taskstore_redis.GenericTaskStore] = []
    memory = taskstore_redis.InMemoryBackend()

    def make(
        config: StoreConfig | None = None, security: SecurityConfig | None = None, **_: Any
    ) -> taskstore_redis.GenericTaskStore:
        backend: taskstore_redis.backend.StorageBackend = memory
        if backend_url is not None:
            backend = taskstore_redis.RedisBackend.from_url(backend_url, prefix=key_prefix)
        store = taskstore_redis.GenericTaskStore(backend, config, _security(security))
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture(scope="session")
def metric_reader() -> Any:
    """An in-memory OpenTelemetry reader on the global MeterProvider, set once per session.

    Metrics are cumulative: a test compares what it reads before and after its workload.
    """
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader
