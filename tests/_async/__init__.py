"""The contract suite, written for the async store; scripts/unasync.py derives its blocking twin."""
