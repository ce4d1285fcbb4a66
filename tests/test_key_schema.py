"""The key schema: no id can reach another owner's keys, leave its slot or break the tag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from taskstore_redis import InvalidArgument, SecurityConfig, TaskNotFound
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis.backend import ListPosition, TaskKey
from tests.conftest import SyncStoreFactory

HOSTILE_IDS = [
    "",
    "local",
    "a:b",
    "a",
    "{taskstore:3}",
    "}{",
    "*",
    "?",
    "[a-z]",
    "with space",
    "line\nbreak",
    "nul\x00byte",
    "ünïcødé ✓",
    "%41",
    "A",
    "#" + "0" * 64,
    "t:alice:x",
    "x" * 10_000,
    "y" * 10_000,
]


def slot_of_tag(keys: KeySchema, owner: str) -> int:
    return key_slot(keys.tag(keys.shard_of(owner)).encode())


@pytest.mark.parametrize("owner", HOSTILE_IDS)
def test_every_key_of_an_owner_lies_in_the_slot_of_its_tag(owner: str) -> None:
    keys = KeySchema()
    expected = slot_of_tag(keys, owner)
    for name in (
        keys.task_key(TaskKey(owner, "}{:*")),
        keys.index_key(owner),
        keys.expiry_key(owner),
        keys.due_key(keys.shard_of(owner)),
    ):
        assert key_slot(name.encode("utf-8", "surrogatepass")) == expected


@pytest.mark.parametrize("owner", HOSTILE_IDS)
@pytest.mark.parametrize("queue", ["default", "}{:*", "{taskstore:3}", "q r"])
def test_a_tasks_queue_keys_lie_in_its_slot_and_its_member_leads_back_to_its_key(
    owner: str, queue: str
) -> None:
    keys = KeySchema()
    task = TaskKey(owner, "}{:*")
    shard = keys.shard_of(owner)
    expected = slot_of_tag(keys, owner)
    names = [
        *keys.queue_keys(queue, shard),
        keys.queues_key(shard),
        keys.queue_channel(queue, shard),
        keys.task_base(shard),
    ]
    for name in names:
        assert key_slot(name.encode("utf-8", "surrogatepass")) == expected
    member = keys.queue_member(task)
    assert keys.task_base(shard) + member == keys.task_key(task)
    assert keys.task_id_of_member(member) == task.task_id
    for name in keys.queue_keys(queue, shard):
        assert name.count("{") == 1 and name.count("}") == 1


@pytest.mark.parametrize("owner", HOSTILE_IDS)
def test_ids_never_put_separators_braces_globs_or_spaces_into_keys(owner: str) -> None:
    keys = KeySchema()
    part = keys.owner_part(owner)
    assert not set(part) & set(":{}*?[] \n\x00")
    assert len(part) <= 128


@given(st.text(), st.text(), st.text(), st.text())
def test_distinct_owner_and_task_pairs_get_distinct_task_keys(
    owner_a: str, task_a: str, owner_b: str, task_b: str
) -> None:
    keys = KeySchema()
    same_key = keys.task_key(TaskKey(owner_a, task_a)) == keys.task_key(TaskKey(owner_b, task_b))
    assert same_key == ((owner_a, task_a) == (owner_b, task_b))


@given(st.text(), st.text(min_size=1), st.integers(0, 10**14))
def test_an_index_member_gives_back_its_list_position(owner: str, task: str, created: int) -> None:
    keys = KeySchema()
    member = keys.index_member(TaskKey(owner, task), created)
    assert keys.position_of(member) == ListPosition(created, task)
    assert keys.member_at(owner, ListPosition(created, task)) == member


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "a:b", "a b", "x" * 65, "ü"])
def test_a_prefix_that_could_break_the_tag_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidArgument):
        KeySchema(prefix=prefix)


def test_owners_with_hostile_ids_see_only_their_own_tasks(
    sync_make_store: SyncStoreFactory,
) -> None:
    store = sync_make_store(security=SecurityConfig(allow_anonymous=True))
    created = {
        owner: store.create("tools/call", owner_id=owner).task.task_id for owner in HOSTILE_IDS
    }
    for owner, task_id in created.items():
        page = store.list(owner_id=owner)
        assert [record.task.task_id for record in page.tasks] == [task_id]
        assert store.get(task_id, owner_id=owner).owner_id == owner
        for other in HOSTILE_IDS:
            if other != owner:
                with pytest.raises(TaskNotFound):
                    store.get(task_id, owner_id=other)
