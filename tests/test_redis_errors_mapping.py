"""A failure inside the Redis client is the store's StoreUnavailable; a bug of ours stays a bug."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis.exceptions

from taskstore_redis import StoreUnavailable
from taskstore_redis._redis.errors import map_redis_errors, may_pass


def _raising_in(module: str) -> Callable[[], None]:
    """A function whose frame belongs to ``module``, raising what a torn-down connection does."""
    namespace: dict[str, Any] = {"__name__": module}
    torn_down = "'NoneType' object has no attribute 'writelines'"
    source = f"def send():\n    raise AttributeError({torn_down!r})\n"
    exec(compile(source, f"<{module}>", "exec"), namespace)
    send: Callable[[], None] = namespace["send"]
    return send


@pytest.mark.parametrize("write", [True, False])
def test_an_error_raised_inside_the_client_is_store_unavailable(write: bool) -> None:
    send = _raising_in("redis.asyncio.connection")
    with (
        pytest.raises(StoreUnavailable) as raised,
        map_redis_errors("compare_and_set", write=write),
    ):
        send()
    assert raised.value.outcome_unknown is write
    assert may_pass(raised.value.__cause__)


def test_an_error_raised_in_our_own_code_is_not_taken_for_an_outage() -> None:
    send = _raising_in("taskstore_redis._async._redis")
    with pytest.raises(AttributeError), map_redis_errors("compare_and_set", write=True):
        send()
    try:
        send()
    except AttributeError as exc:
        assert not may_pass(exc)


@pytest.mark.parametrize(
    "refusal",
    [
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
        redis.exceptions.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
    ],
)
def test_a_write_the_server_refused_unrun_during_a_failover_was_not_sent_and_may_pass(
    refusal: Exception,
) -> None:
    with (
        pytest.raises(StoreUnavailable) as raised,
        map_redis_errors("create", write=True),
    ):
        raise refusal
    assert raised.value.outcome_unknown is False
    assert "nothing was written" in str(raised.value)
    assert may_pass(raised.value.__cause__)
