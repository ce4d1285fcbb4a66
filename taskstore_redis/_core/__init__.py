"""Pure domain: no I/O. The rules, the model, the errors and the in-memory engine."""
