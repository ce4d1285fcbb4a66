"""The ``taskstore-redis`` command and its tools (demo, bench)."""
