"""The async implementation; `_sync` is generated from it by scripts/unasync.py."""
