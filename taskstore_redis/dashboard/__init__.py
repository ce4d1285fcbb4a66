"""A web dashboard of a store: queues, workers, failures, tasks and owners, in a browser.

``create_app(store)`` returns a Starlette (ASGI) app to serve (``taskstore-redis
dashboard``) or to mount under a prefix in an existing Starlette or FastAPI app.
It needs the ``dashboard`` extra: ``pip install 'taskstore-redis[dashboard]'``.
"""

from __future__ import annotations

try:
    import jinja2 as _jinja2  # noqa: F401
    import starlette as _starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "taskstore_redis.dashboard needs Starlette and Jinja2: "
        "pip install 'taskstore-redis[dashboard]'"
    ) from exc

from ._app import create_app

__all__ = ["create_app"]
