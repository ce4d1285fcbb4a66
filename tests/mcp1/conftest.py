"""The tests of the MCP SDK 1.x adapter, taskstore_redis.mcp1: they need the SDK 1.x.

The whole suite leaves this directory out unless the SDK 1.x is installed (see
tests/conftest.py). Asked for by name on another SDK, it stops at once with the
one-line ImportError of taskstore_redis.mcp1, which says what to install.
"""

from __future__ import annotations

import taskstore_redis.mcp1  # noqa: F401 - on another MCP SDK: what to install, in one line
