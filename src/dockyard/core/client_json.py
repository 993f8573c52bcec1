"""The one way JSON from a client is read: request bodies, manifests, policy documents, lifecycle
policies, creation templates and pagination tokens all go through :func:`loads`.

Python's parser is happy with text that later breaks the code reading it, so this refuses
three things besides bad syntax, each raising :class:`MalformedJson` (a ``ValueError``, which
callers already treat as "not JSON"):

* Nesting deeper than :data:`MAX_DEPTH`. The json module recurses once per level and raises
  ``RecursionError`` near Python's recursion limit (1,000 frames, fewer the deeper the caller
  already is), and everything that walks the result recurses too. AWS's Java front ends use
  Jackson, whose default limit is 1,000 levels; none of the documents read here legitimately
  goes past 6 (a policy's Condition values, an OCI index's descriptors), so 100 leaves ample
  room while staying far from the interpreter's limit. The C parser guards its own recursion
  (a clean ``RecursionError`` around 1,000 levels, caught here); whatever parses is then
  measured, so nothing deeper than :data:`MAX_DEPTH` reaches a caller.
* Lone UTF-16 surrogates (``"\\ud800"``), which JSON's grammar allows as escapes but which
  no UTF-8 text can hold: every later ``str.encode`` (length checks, SQLite, logs) would raise.
* ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON at all.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 100

# A JSON string, escapes included (the unrolled form keeps the regex engine linear).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# An escape that may decode to a surrogate; only then are the decoded strings examined.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class MalformedJson(ValueError):
    """Client JSON this server will not read; ``reason`` says why, for logs and error details."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse client JSON (UTF-8 when given bytes), refusing what :class:`MalformedJson` lists."""
    text = _text(data)
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedJson(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise MalformedJson(f"not valid JSON: {exc}") from None
    # Counting openers first keeps ordinary documents off the slower exact measure.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise MalformedJson(f"JSON nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text) and _holds_surrogate(value):
        raise MalformedJson("JSON string holds a lone UTF-16 surrogate")
    return value


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in the valid JSON `text`.

    Brackets inside strings are dropped with a regex (linear on valid JSON, whose strings all
    end), the rest summed by accumulate: C-speed passes, so millions of brackets cost
    milliseconds rather than a Python step per character."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _text(data: bytes | bytearray | str) -> str:
    if isinstance(data, str):
        if _SURROGATE.search(data):  # a str can carry raw surrogates, bytes decoded as UTF-8 cannot
            raise MalformedJson("JSON text holds a lone UTF-16 surrogate")
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"JSON text is not UTF-8: {exc}") from None


def _holds_surrogate(value: Any) -> bool:
    # Iterative: the value is at most MAX_DEPTH deep, but there is no need to recurse at all.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
