"""The library's loggers: ``taskstore_redis`` and one child per area.

The library never configures handlers or levels: the application does (for
example ``logging.basicConfig``). Nothing is logged at INFO or above for an
operation that succeeds; what an operator needs is: reconnections, script
reloads, writes of unknown outcome, resubscriptions and the configuration
guard's findings.
"""

from __future__ import annotations

import logging

ROOT = logging.getLogger("taskstore_redis")
"""The parent of every logger of the library."""

REDIS = logging.getLogger("taskstore_redis.redis")
"""The Redis backend: the configuration guard, reconnections, script reloads, unknown outcomes."""

PUBSUB = logging.getLogger("taskstore_redis.pubsub")
"""The change subscriptions: lost connections and resubscriptions."""
