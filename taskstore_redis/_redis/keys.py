"""The Redis key schema: every key of an owner lives under one hash tag.

=================================  ======  ===================================================
key                                type    holds
=================================  ======  ===================================================
``{P:S}:t:<owner>:<task>``         hash    the task (see docs/internals/storage-format.md)
``{P:S}:i:<owner>``                zset    owner index, all scores 0, members ordered by lex
``{P:S}:x:<owner>``                zset    the same members, scored by expiry ms (``+inf``
                                           for none), negated once the task is terminal
``{P:S}:due``                      zset    ``"<index key> <expiry key> <task prefix>"`` per
                                           owner with expiring tasks, by earliest expiry
``{P:S}:q:<queue>:r``              zset    a work queue's tasks of the shard claimable now, in
                                           claim order (priority, then fair tag), members
                                           ``<owner part>:<task part>``
``{P:S}:q:<queue>:w``              zset    its tasks claimable later, by ready-at ms
``{P:S}:q:<queue>:v``              hash    its fair-queuing tags: ``""`` the last claimed,
                                           ``g<group>`` a group's last
``{P:S}:q:<queue>:m``              hash    its limits (``set_limits``)
``{P:S}:q:<queue>:a``              hash    its leases held and token buckets, while it has
                                           limits
``{P:S}:q:<queue>:h``              zset    its groups at a limit, by when to look again
``{P:S}:q:<queue>:h:<group>``      zset    the tasks a claim set aside of such a group
``{P:S}:q:<queue>:b``              zset    its tasks waiting for their parents, by submit ms
``{P:S}:q:<queue>:l``              zset    the same queue's leased tasks, by lease deadline ms
``{P:S}:q:<queue>:s``              hash    the queue's counters on the shard
``{P:S}:q:<queue>:d:<o>:<k>``      string  the encoded id of the last task owner ``<o>``
                                           submitted to the queue with dedup key ``<k>``
``{P:S}:queues``                   set     the names of the shard's queues
``{P:S}:sc``                       zset    the shard's schedules (encoded names), by next
                                           fire time ms
``{P:S}:sc:<name>``                hash    a schedule of an owner of the shard: ``s`` its
                                           spec, ``n`` next fire ms, ``v`` spec version,
                                           ``l`` last fire ms, ``t`` last task id
``{P:sc}:names``                   hash    every schedule name (encoded) -> its owner id
=================================  ======  ===================================================

A queue's member joined to the shard's task key base ``{P:S}:t:`` is the task's
key. The scripts name a queue's ``w``, ``v``, ``m``, ``a`` and ``h`` keys from
its ready set's (the same name but the last letter), and so its ``b`` key. Queue names are
percent-encoded like owner ids. A queue's shard channel is named like its ready
set: submits, releases and recoveries publish there.

Each task also has a shard channel (``SPUBLISH``) named exactly like its hash:
channels and keys are separate namespaces, and the shared name puts the channel
in the slot of the task, where the write scripts may publish on a cluster. A
write script publishes the new version there (an empty message when a purge
deleted the task); waiters take a message only as a sign to read again.

A schedule lives in its owner's shard, so the script that fires it creates the task
in the same slot; the names hash, in a slot of its own (``sc`` is no shard), keeps
names unique across shards. The shard channel named like ``{P:S}:sc`` says that a
schedule of the shard changed: schedulers wake and read the shard again.

The MCP server events of a store (``subscriptions/listen``, see
:mod:`taskstore_redis.mcp`) go on one shard channel, ``{P:mcp}:events``, a small
JSON message each. Its hash tag is no shard's (shards are numbers), so it names
no key, and one node of a cluster serves it.

``P`` is the key prefix, ``S`` the owner's shard (a stable hash of the owner id
modulo the shard count). An index member is ``<created_at_ms, 9 base-36 digits>:<task id>``:
lexical order is creation order, ties broken by task id; scripts reach the task
by joining the owner's task prefix (``{P:S}:t:<owner>:``, passed as a declared
key, so in the same slot) with the id after the member's first ``:``.

Owner ids are percent-encoded (every byte outside ``A-Z a-z 0-9 . _ ~ -``), task
ids too behind a ``~`` unless they are canonical UUIDs (26 base32hex digits, see
:func:`encode_task_id`), so no id can contain ``:``, ``{``, ``}``, a space or a
glob character in a key; an owner id whose encoding exceeds 128 characters is
replaced by ``#`` and its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from urllib.parse import quote, unquote

from .._core.backend_types import ListPosition, TaskKey
from .._core.errors import InvalidArgument

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_OWNER_KEY_PART = 128
_REMEMBERED_OWNERS = 4096
_REMEMBERED_TASKS = 16384


def encode_id(value: str) -> str:
    """Percent-encode an id so that only ``A-Z a-z 0-9 . _ ~ - %`` remain."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def decode_id(value: str) -> str:
    """Invert :func:`encode_id`."""
    return unquote(value, encoding="utf-8", errors="surrogatepass")


_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BASE32HEX = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_LITERAL = "~"
_SHIFTS = range(125, -1, -5)


_encoded_task_ids: dict[str, str] = {}


def encode_task_id(task_id: str) -> str:
    """A task id as keys and index members spell it.

    A canonical lowercase UUID (every id the store makes) becomes the 26 base32hex
    digits of its 128 bits, which sort as the UUIDs do; any other id becomes ``~``
    and its :func:`encode_id` (no base32hex digit is ``~``, so the two never meet).
    Remembered for recent ids: a task's keys, members and channel each spell it.
    """
    encoded = _encoded_task_ids.get(task_id)
    if encoded is None:
        if len(_encoded_task_ids) >= _REMEMBERED_TASKS:
            _encoded_task_ids.clear()
        encoded = _encoded_task_ids[task_id] = _encode_task_id(task_id)
    return encoded


def _encode_task_id(task_id: str) -> str:
    if len(task_id) == 36 and _UUID_RE.fullmatch(task_id):
        number = int(task_id.replace("-", ""), 16)
        return "".join([_BASE32HEX[(number >> shift) & 31] for shift in _SHIFTS])
    return _LITERAL + encode_id(task_id)


def decode_task_id(part: str) -> str:
    """Invert :func:`encode_task_id`."""
    if part.startswith(_LITERAL):
        return decode_id(part[1:])
    text = f"{int(part, 32):032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_CREATED_BASE36_DIGITS = 9
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE36_POWERS = tuple(36**n for n in reversed(range(_CREATED_BASE36_DIGITS)))


def _base36(value: int) -> str:
    """``value`` as 9 base-36 digits.

    Out of range (only in a crafted cursor), a bound below (``-``) or above
    (``zzzzzzzzz``) every member.
    """
    if value < 0:
        return "-"
    value = min(value, 36**_CREATED_BASE36_DIGITS - 1)
    return "".join([_BASE36[value // power % 36] for power in _BASE36_POWERS])


class KeySchema:
    """Builds every Redis key name and index member of one store; the only place that does."""

    def __init__(self, prefix: str = "taskstore", shards: int = 16) -> None:
        """Check the prefix (``A-Z a-z 0-9 _ . -``, up to 64) and the shard count (1..16384)."""
        if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
            raise InvalidArgument(
                f"key prefix must be 1-64 characters of A-Z a-z 0-9 _ . -, got {prefix!r}"
            )
        if not isinstance(shards, int) or not 1 <= shards <= 16384:
            raise InvalidArgument(f"shards must be an int from 1 to 16384, got {shards!r}")
        self.prefix = prefix
        self.shards = shards
        self._owners: dict[str, tuple[str, str]] = {}
        self._queues: dict[tuple[str, int], tuple[str, str, str]] = {}

    def shard_of(self, owner_id: str) -> int:
        """The owner's shard: CRC-32 of its UTF-8 bytes modulo the shard count."""
        return zlib.crc32(owner_id.encode("utf-8", "surrogatepass")) % self.shards

    def tag(self, shard: int) -> str:
        """The hash tag of a shard: ``{prefix:shard}``."""
        return f"{{{self.prefix}:{shard}}}"

    def owner_part(self, owner_id: str) -> str:
        """The owner id as it appears in key names."""
        encoded = encode_id(owner_id)
        if len(encoded) <= _MAX_OWNER_KEY_PART:
            return encoded
        digest = hashlib.sha256(owner_id.encode("utf-8", "surrogatepass")).hexdigest()
        return "#" + digest

    def _owner_key(self, kind: str, owner_id: str) -> str:
        tag, part = self._owner_parts(owner_id)
        return f"{tag}:{kind}:{part}"

    def _owner_parts(self, owner_id: str) -> tuple[str, str]:
        """The owner's shard tag and encoded id, remembered for recent owners."""
        parts = self._owners.get(owner_id)
        if parts is None:
            if len(self._owners) >= _REMEMBERED_OWNERS:
                self._owners.clear()
            parts = (self.tag(self.shard_of(owner_id)), self.owner_part(owner_id))
            self._owners[owner_id] = parts
        return parts

    def task_prefix(self, owner_id: str) -> str:
        """What every task key of the owner starts with; a task key is it and the encoded id.

        Scripts get it as a declared key (so Redis Cluster checks its slot) and join
        it with the id of an index member to reach a task.
        """
        return self._owner_key("t", owner_id) + ":"

    def task_key(self, key: TaskKey) -> str:
        """The hash holding one task."""
        return self.task_prefix(key.owner_id) + encode_task_id(key.task_id)

    def channel(self, key: TaskKey) -> str:
        """The shard channel the write scripts publish a task's changes on (its hash's name)."""
        return self.task_key(key)

    def mcp_events_channel(self) -> str:
        """The shard channel MCP server events go on: ``{prefix:mcp}:events``.

        One channel for the whole store, in the slot of its own hash tag.
        """
        return f"{{{self.prefix}:mcp}}:events"

    def index_key(self, owner_id: str) -> str:
        """The owner's index, in creation order."""
        return self._owner_key("i", owner_id)

    def expiry_key(self, owner_id: str) -> str:
        """The owner's index scored by expiry, for the quota and cleanup."""
        return self._owner_key("x", owner_id)

    def pattern(self) -> str:
        """A ``SCAN MATCH`` pattern of every key of this prefix, whatever its shard.

        The prefix holds no glob character, so it matches itself only.
        """
        return f"{{{self.prefix}:*"

    def due_key(self, shard: int) -> str:
        """The shard's owners with expiring tasks, scored by earliest expiry."""
        return f"{self.tag(shard)}:due"

    def due_member(self, owner_id: str) -> str:
        """An owner's entry in its shard's due set: its index key, expiry key and task prefix."""
        return (
            f"{self.index_key(owner_id)} {self.expiry_key(owner_id)} {self.task_prefix(owner_id)}"
        )

    @staticmethod
    def index_member(key: TaskKey, created_at_ms: int) -> str:
        """A task's member in the owner's index: creation time, ``:``, the encoded task id.

        The creation time is 9 base-36 digits (lower case, so lexical order is time
        order, up to the year 5138).
        """
        return f"{_base36(created_at_ms)}:{encode_task_id(key.task_id)}"

    @staticmethod
    def position_of(member: str) -> ListPosition:
        """The list position an index member stands for."""
        created, _, task_id = member.partition(":")
        return ListPosition(int(created, 36), decode_task_id(task_id))

    def member_at(self, owner_id: str, position: ListPosition) -> str:
        """The index member of a list position."""
        return self.index_member(TaskKey(owner_id, position.task_id), position.created_at_ms)

    # --- work queues ------------------------------------------------------------------------

    def queue_key(self, queue: str, shard: int, kind: str) -> str:
        """A key of one shard of a queue, by kind (``r``, ``l``, ``s``, ``w``, ``v``).

        ``r`` ready set, ``l`` leased set, ``s`` counters, ``w`` waiting set, ``v``
        fair-queuing tags.
        """
        return f"{self.tag(shard)}:q:{encode_id(queue)}:{kind}"

    def queue_keys(self, queue: str, shard: int) -> tuple[str, str, str]:
        """The ready set, leased set and counters of one shard of a queue, in that order.

        Remembered for recent queues.
        """
        keys = self._queues.get((queue, shard))
        if keys is None:
            if len(self._queues) >= _REMEMBERED_OWNERS:
                self._queues.clear()
            ready, leased, counters = (self.queue_key(queue, shard, kind) for kind in "rls")
            keys = self._queues[queue, shard] = (ready, leased, counters)
        return keys

    def dedup_key(self, queue: str, key: TaskKey, dedup_key: str) -> str:
        """The key naming the last task of an owner submitted to ``queue`` with ``dedup_key``.

        A string key in the owner's shard, holding the encoded task id.
        """
        tag, part = self._owner_parts(key.owner_id)
        return f"{tag}:q:{encode_id(queue)}:d:{part}:{encode_id(dedup_key)}"

    def limits_key(self, queue: str, shard: int) -> str:
        """The limits hash of one shard of a queue (``set_limits``)."""
        return self.queue_key(queue, shard, "m")

    def queue_channel(self, queue: str, shard: int) -> str:
        """The shard channel that says a shard of a queue may have work (its ready set's name)."""
        return self.queue_key(queue, shard, "r")

    def queues_key(self, shard: int) -> str:
        """The set of the names of the queues a shard has seen."""
        return f"{self.tag(shard)}:queues"

    def task_base(self, shard: int) -> str:
        """What every task key of a shard starts with; a queue member completes it."""
        return f"{self.tag(shard)}:t:"

    def queue_member(self, key: TaskKey) -> str:
        """A task's member in its queue's sets: its key less the shard's task key base."""
        _, part = self._owner_parts(key.owner_id)
        return f"{part}:{encode_task_id(key.task_id)}"

    # --- schedules ------------------------------------------------------------------------

    def schedules_key(self, shard: int) -> str:
        """The shard's schedules, by next fire time (also its change channel's name)."""
        return f"{self.tag(shard)}:sc"

    def schedule_base(self, shard: int) -> str:
        """What every schedule hash of the shard starts with; an encoded name completes it."""
        return f"{self.tag(shard)}:sc:"

    def schedule_key(self, owner_id: str, name: str) -> str:
        """The hash of the schedule ``name`` of ``owner_id`` (in the owner's shard)."""
        return self.schedule_base(self.shard_of(owner_id)) + encode_id(name)

    def schedule_names_key(self) -> str:
        """The hash of every schedule name and its owner, ``{prefix:sc}:names``."""
        return f"{{{self.prefix}:sc}}:names"

    @staticmethod
    def task_id_of_member(member: str) -> str:
        """The task id a queue member stands for."""
        return decode_task_id(member.rpartition(":")[2])
