"""Redis specifics shared by the async and the sync code: key schema, scripts, error mapping."""
