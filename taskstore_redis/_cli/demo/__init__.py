"""``taskstore-redis demo``: worker processes share one store, and the demo checks the outcome.

The parent submits the tasks to a work queue, and worker processes (or, with the
in-memory backend, groups of coroutines in this process) claim them with a fenced
lease and take them through the MCP Tasks life cycle while the parent plays the
client: it answers every task that asks for input, cancels some tasks while they
run, and waits (no polling) until each one is terminal. With ``--chaos`` one worker
process is SIGKILLed mid-run; the tasks it held are claimed again by the others
once their lease runs out. At the end a fresh store lists every owner's tasks
through all pages and checks each task against what the workers and the client
reported.

Modules by role: ``plan`` (the task plan and the values expected),
``worker`` (worker processes or coroutine groups), ``client`` (submitting, waiting,
answering input, cancelling), ``verify`` (the final check from the store) and
``runner`` (one run: the options, the phases, the summary).
"""

from .runner import add_arguments, run

__all__ = ["add_arguments", "run"]
