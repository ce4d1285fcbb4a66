"""Store settings: plain, immutable and picklable, so worker processes can share them."""

from __future__ import annotations

import msgspec

from .errors import InvalidArgument

ANONYMOUS_OWNER_IDS = frozenset({"", "local"})
"""Owner ids that count as anonymous."""


class StoreConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Limits and defaults of a :class:`GenericTaskStore`.

    A TTL setting of ``None`` means no default TTL (tasks never expire unless
    asked) or no upper bound.
    """

    max_variable_size_bytes: int = 1_048_576
    default_ttl_ms: int | None = 3_600_000
    max_ttl_ms: int | None = 86_400_000
    max_variable_depth: int = 10
    max_string_length: int = 65_536
    max_result_size_bytes: int = 1_048_576
    poll_interval_ms: int = 500
    expired_retention_ms: int = 3_600_000
    cas_retries: int = 16
    """Conflicts a status or result change survives before ``ConcurrentModification``."""
    cas_timeout_ms: int = 2000
    """How long a status or result change keeps retrying after conflicts (checked after each
    conflict) before ``ConcurrentModification``; variable merges never conflict."""
    list_default_limit: int = 50
    list_max_limit: int = 1000
    record_cache_size: int = 1024
    """Records a store remembers per process, so that a mutation of a remembered task
    costs one round trip; 0 turns the memory off."""
    default_lease_ms: int = 30_000
    """How long a claimed task stays leased to its worker unless renewed."""
    max_lease_ms: int = 86_400_000
    """The longest lease a claim or renewal may ask for."""
    default_max_attempts: int = 3
    """Claims a queued task gets before a lost lease makes it fail (per ``submit``)."""
    max_params_bytes: int = 1_048_576
    """The largest job input (``params``, as canonical JSON) ``submit`` accepts."""
    max_claim_count: int = 1000
    """The most tasks one ``claim_many`` may take."""
    recovery_batch: int = 100
    """Expired leases one claim or sweep step recovers at most per shard (bounded work)."""

    def __post_init__(self) -> None:
        """Reject settings that could never work."""
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None and name in ("default_ttl_ms", "max_ttl_ms"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"StoreConfig.{name} must be an int >= 0, got {value!r}")
        for name in ("default_lease_ms", "default_max_attempts", "max_claim_count"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"StoreConfig.{name} must be >= 1")
        if self.recovery_batch < 1 or self.default_lease_ms > self.max_lease_ms:
            raise InvalidArgument(
                "StoreConfig needs recovery_batch >= 1 and default_lease_ms <= max_lease_ms"
            )
        if self.list_default_limit < 1 or self.list_max_limit < self.list_default_limit:
            raise InvalidArgument("StoreConfig needs 1 <= list_default_limit <= list_max_limit")
        if (
            self.default_ttl_ms is not None
            and self.max_ttl_ms is not None
            and self.default_ttl_ms > self.max_ttl_ms
        ):
            raise InvalidArgument("StoreConfig.default_ttl_ms exceeds max_ttl_ms")


class SecurityConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Owner quotas and anonymous access."""

    max_tasks_per_owner: int | None = 100
    """Unexpired tasks in progress (``working`` or ``input_required``) one owner may hold;
    terminal tasks do not count; ``None`` for no limit."""
    allow_anonymous: bool = False
    """Whether the owner ids ``""`` and ``"local"`` may be used."""

    def __post_init__(self) -> None:
        """Reject a negative quota."""
        limit = self.max_tasks_per_owner
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidArgument(
                f"SecurityConfig.max_tasks_per_owner must be an int >= 0 or None, got {limit!r}"
            )
