"""Storing the MCP SDK's pydantic ``Result`` objects as plain JSON, and getting them back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import mcp.types
from mcp.types import Result

from .._core.errors import StorageCorrupted
from .._core.model import JSONValue

_TYPE = "type"
_VALUE = "value"


def _name(cls: type[Result]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _sdk_result_types() -> dict[str, type[Result]]:
    found: dict[str, type[Result]] = {}
    for value in vars(mcp.types).values():
        if isinstance(value, type) and issubclass(value, Result):
            found[_name(value)] = value
    return found


class ResultCodec:
    """Turns a ``Result`` into JSON naming its type, and that JSON back into the same type.

    Only the result classes of ``mcp.types`` and those given are ever built from
    stored data (no class is imported by name); a stored result of another type
    comes back as a plain ``Result`` holding the same fields.
    """

    def __init__(self, extra_types: Iterable[type[Result]] = ()) -> None:
        """Know the SDK's result classes and ``extra_types``."""
        self._types = _sdk_result_types()
        for cls in extra_types:
            if not (isinstance(cls, type) and issubclass(cls, Result)):
                raise TypeError(f"result types must be subclasses of mcp.types.Result: {cls!r}")
            self._types[_name(cls)] = cls

    def encode(self, result: Result) -> dict[str, JSONValue]:
        """The JSON of ``result``: its type's name and its fields as on the wire."""
        if not isinstance(result, Result):
            raise TypeError(f"expected an mcp.types.Result, got {type(result).__name__}")
        value: dict[str, Any] = result.model_dump(mode="json", by_alias=True)
        return {_TYPE: _name(type(result)), _VALUE: value}

    def decode(self, stored: JSONValue) -> Result:
        """The ``Result`` that :meth:`encode` turned into ``stored``.

        A JSON object that :meth:`encode` did not write (a result a queue worker
        completed its task with, say) comes back as a plain ``Result`` holding its
        fields, so it goes to the client as it was written.
        """
        if not isinstance(stored, dict):
            raise StorageCorrupted("a stored MCP result is not a JSON object")
        value = stored.get(_VALUE)
        if set(stored) != {_TYPE, _VALUE} or not isinstance(value, dict):
            return Result.model_validate(stored)
        cls = self._types.get(str(stored[_TYPE]), Result)
        return cls.model_validate(value)
