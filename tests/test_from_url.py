"""``from_url`` checks what it is given when it is called, and never shows a password.

An unknown option or a malformed URL is refused at once with ``InvalidArgument``,
naming what is wrong and what is accepted, on both APIs, for standalone and cluster
URLs. No exception message and no log record ever carries a URL's password.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as ats
from taskstore_redis import InvalidArgument, TaskStoreError

APIS = [pytest.param(ts, id="sync"), pytest.param(ats, id="async")]
CLUSTER = [
    pytest.param(None, id="detected"),
    pytest.param(False, id="standalone"),
    pytest.param(True, id="cluster"),
]
URL = "redis://127.0.0.1:1/0"
SECRET = "s3cret"


def builders(api: ModuleType) -> list[Any]:
    return [api.GenericTaskStore.from_url, api.RedisBackend.from_url]


@pytest.mark.parametrize("cluster", CLUSTER)
@pytest.mark.parametrize("api", APIS)
def test_an_unknown_option_is_refused_at_once_naming_it_and_what_is_accepted(
    api: ModuleType, cluster: bool | None
) -> None:
    for build in builders(api):
        with pytest.raises(InvalidArgument) as raised:
            build(URL, cluster=cluster, key_prefix="x")
        message = str(raised.value)
        assert "'key_prefix'" in message
        assert "did you mean 'prefix'" in message
        for accepted in ("prefix", "shards", "socket_timeout", "client_name", "password"):
            assert accepted in message


@pytest.mark.parametrize("cluster", CLUSTER)
@pytest.mark.parametrize("api", APIS)
def test_an_unknown_option_in_the_urls_query_is_refused_at_once(
    api: ModuleType, cluster: bool | None
) -> None:
    for build in builders(api):
        with pytest.raises(InvalidArgument) as raised:
            build(f"{URL}?key_prefix={SECRET}", cluster=cluster)
        assert "'key_prefix' in the URL's query" in str(raised.value)
        assert SECRET not in str(raised.value)


MALFORMED = [
    pytest.param("redis://u:s3cret@[::1:1/0", id="broken-ipv6"),
    pytest.param("redis://127.0.0.1:99999/0", id="port-out-of-range"),
    pytest.param("redis://127.0.0.1:port/0", id="port-not-a-number"),
    pytest.param("http://u:s3cret@127.0.0.1:6379/0", id="other-scheme"),
    pytest.param("127.0.0.1:6379", id="no-scheme"),
    pytest.param("redis:127.0.0.1", id="no-slashes"),
    pytest.param("", id="empty"),
    pytest.param("redis://127.0.0.1:6379/zero", id="path-not-a-db-number"),
    pytest.param("redis://127.0.0.1:6379/0?db=x", id="query-value-of-the-wrong-kind"),
    pytest.param("redis://127.0.0.1:6379/0?socket_timeout=soon", id="timeout-not-a-number"),
    pytest.param("unix://", id="unix-without-a-path"),
    pytest.param("redis://u:s3cret@127.0.0.1:6379/0\x1b[2J", id="control-characters"),
    pytest.param("redis://127.0.0.1:6379/0\n", id="a-newline"),
]


@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("cluster", CLUSTER)
@pytest.mark.parametrize("api", APIS)
def test_a_malformed_url_is_refused_at_once_saying_what_a_url_looks_like(
    api: ModuleType, cluster: bool | None, url: str
) -> None:
    for build in builders(api):
        with pytest.raises(InvalidArgument) as raised:
            build(url, cluster=cluster)
        message = str(raised.value)
        assert "not a Redis URL" in message
        assert "redis://host:port/db" in message
        assert SECRET not in message
        assert message.isprintable()


@pytest.mark.parametrize("api", APIS)
def test_a_url_that_is_not_a_str_or_a_cluster_flag_that_is_not_a_bool_is_refused(
    api: ModuleType,
) -> None:
    for build in builders(api):
        with pytest.raises(InvalidArgument, match="must be a str"):
            build(b"redis://127.0.0.1:6379/0")
        with pytest.raises(InvalidArgument, match="cluster must be"):
            build(URL, cluster="yes")


@pytest.mark.parametrize("api", APIS)
def test_an_option_only_a_standalone_client_takes_is_refused_for_a_forced_cluster(
    api: ModuleType,
) -> None:
    # the async cluster client names all it takes; the blocking one forwards the rest to its
    # nodes' clients, so there an option of theirs is accepted
    if api is ats:
        with pytest.raises(InvalidArgument, match="'socket_type' on Redis Cluster"):
            api.GenericTaskStore.from_url(URL, cluster=True, socket_type=0)
    else:
        api.GenericTaskStore.from_url(URL, cluster=True, socket_type=0).close()
    assert api.GenericTaskStore.from_url(URL, cluster=False, socket_type=0) is not None


@pytest.mark.redis
@pytest.mark.parametrize("api", APIS)
def test_options_and_query_options_the_client_takes_work_standalone(
    api: ModuleType, redis_url: str
) -> None:
    url = f"{redis_url}?socket_timeout=3&client_name=from-url-test"
    run(api, url, {"prefix": f"t{uuid.uuid4().hex[:8]}", "health_check_interval": 0})


@pytest.mark.cluster
@pytest.mark.parametrize("api", APIS)
def test_options_and_query_options_the_client_takes_work_on_a_cluster(
    api: ModuleType, cluster_url: str
) -> None:
    url = f"{cluster_url}?socket_timeout=3"
    run(api, url, {"prefix": f"t{uuid.uuid4().hex[:8]}", "client_name": "from-url-test"})


@pytest.mark.cluster
@pytest.mark.parametrize("api", APIS)
def test_an_option_for_the_other_kind_of_server_never_reaches_the_caller_as_a_raw_error(
    api: ModuleType, cluster_url: str
) -> None:
    """Cluster mode left to detection: the option is checked again once it is known."""
    store = api.GenericTaskStore.from_url(cluster_url, prefix="x", socket_type=0)
    try:
        call(api, store, "get", "some-task", owner_id="alice")
    except InvalidArgument as exc:
        assert "'socket_type' on Redis Cluster" in str(exc)
    except TaskStoreError:
        pass  # TaskNotFound: the client took it
    finally:
        call(api, store, "aclose" if api is ats else "close")


def call(api: ModuleType, store: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    method = getattr(store, name)
    if api is ts:
        return method(*args, **kwargs)

    async def main() -> Any:
        return await method(*args, **kwargs)

    return anyio.run(main)


def run(api: ModuleType, url: str, options: dict[str, Any]) -> None:
    if api is ts:
        with ts.GenericTaskStore.from_url(url, **options) as store:
            task_id = store.create("tools/call", owner_id="alice").task.task_id
            assert store.get(task_id, owner_id="alice").task.task_id == task_id
        return

    async def main() -> None:
        async with ats.GenericTaskStore.from_url(url, **options) as store:
            task_id = (await store.create("tools/call", owner_id="alice")).task.task_id
            assert (await store.get(task_id, owner_id="alice")).task.task_id == task_id

    anyio.run(main)


# --- passwords ----------------------------------------------------------------------------

SECRET_URLS = [
    pytest.param("redis://u:s3cret@[::1:1/0", id="malformed-with-userinfo"),
    pytest.param("redis://127.0.0.1:1/0?password=s3cret", id="password-query-parameter"),
    pytest.param("redis://u:s3cret@127.0.0.1:1/0", id="userinfo"),
    pytest.param("redis://:s3cret@127.0.0.1:1/0?key_prefix=x", id="userinfo-unknown-query"),
    pytest.param("redis://u:s3cret@127.0.0.1:1/zero", id="userinfo-bad-path"),
]


def texts(error: BaseException) -> Iterator[str]:
    """The messages of an error and of everything chained to it."""
    seen: set[int] = set()
    current: BaseException | None = error
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]


def sync_calls(url: str, cluster: bool | None) -> list[BaseException]:
    errors: list[BaseException] = []
    try:
        store = ts.GenericTaskStore.from_url(
            url, cluster=cluster, socket_timeout=0.2, socket_connect_timeout=0.2
        )
    except Exception as exc:
        return [exc]
    for action in (
        lambda: store.get("t", owner_id="alice"),
        lambda: store.create("tools/call", owner_id="alice"),
        lambda: store.claim("q", timeout=0.2),
        lambda: store.wait("t", owner_id="alice", until_terminal=True, timeout=0.2),
        store.close,
    ):
        try:
            action()
        except Exception as exc:
            errors.append(exc)
    return errors


def async_calls(url: str, cluster: bool | None) -> list[BaseException]:
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            store = ats.GenericTaskStore.from_url(
                url, cluster=cluster, socket_timeout=0.2, socket_connect_timeout=0.2
            )
        except Exception as exc:
            errors.append(exc)
            return
        for action in (
            lambda: store.get("t", owner_id="alice"),
            lambda: store.create("tools/call", owner_id="alice"),
            lambda: store.claim("q", timeout=0.2),
            lambda: store.wait("t", owner_id="alice", until_terminal=True, timeout=0.2),
            store.aclose,
        ):
            try:
                await action()
            except Exception as exc:
                errors.append(exc)

    anyio.run(main)
    return errors


@pytest.mark.parametrize("cluster", CLUSTER)
@pytest.mark.parametrize("url", SECRET_URLS)
@pytest.mark.parametrize("api", APIS)
def test_no_exception_message_or_log_record_shows_a_urls_password(
    api: ModuleType, url: str, cluster: bool | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors = (sync_calls if api is ts else async_calls)(url, cluster)
    assert errors, "nothing was refused: the URL points at nothing listening"
    for error in errors:
        assert isinstance(error, TaskStoreError), repr(error)
        for text in texts(error):
            assert SECRET not in text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            for text in texts(record.exc_info[1]):
                assert SECRET not in text


@pytest.mark.redis
@pytest.mark.parametrize("where", ["userinfo", "query"])
@pytest.mark.parametrize("api", APIS)
def test_a_password_a_live_server_refuses_is_not_shown_either(
    api: ModuleType, where: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scheme, rest = redis_url.split("://", 1)
    url = (
        f"{scheme}://someone:{SECRET}@{rest}"
        if where == "userinfo"
        else f"{redis_url}?username=someone&password={SECRET}"
    )
    errors = (sync_calls if api is ts else async_calls)(url, None)
    assert errors, "the server took a password it does not know"
    for error in errors:
        assert isinstance(error, TaskStoreError), repr(error)
        for text in texts(error):
            assert SECRET not in text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
