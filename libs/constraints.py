"""Placement constraints, Marathon's semantics on host attributes (``hostname`` and any label a
host reports).  Parsed once here for the gateway (validation) and the placer (evaluation).

    ["hostname", "UNIQUE"]            at most one instance per value
    ["rack", "CLUSTER", "r1"]         only hosts whose rack is r1 (no value: all on one rack)
    ["rack", "GROUP_BY"]              spread evenly over the values (optional: number of values)
    ["zone", "MAX_PER", "2"]          at most 2 instances per value
    ["hostname", "LIKE", "h[0-9]+"]   attribute matches the regex (whole value)
    ["hostname", "UNLIKE", "h1"]      attribute does not match the regex
"""
from __future__ import annotations

import re
from dataclasses import dataclass

OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "MAX_PER", "LIKE", "UNLIKE")
_ATTR_RE = re.compile(r"^[A-Za-z0-9_.\-/]{1,63}$")
MAX_PER_LIMIT = 1_000_000


class ConstraintError(ValueError):
    pass


@dataclass(frozen=True)
class Constraint:
    attribute: str
    operator: str
    value: str = ""

    @property
    def number(self) -> int:
        return int(self.value) if self.value else 0

    def __str__(self) -> str:
        return f"{self.operator} {self.attribute}" + (f" {self.value}" if self.value else "")


def parse(raw: list[str] | tuple[str, ...]) -> Constraint:
    if not isinstance(raw, list | tuple) or not 2 <= len(raw) <= 3 or not all(isinstance(x, str) for x in raw):
        raise ConstraintError('a constraint is ["attribute", "OPERATOR"] or ["attribute", "OPERATOR", "value"]')
    attr, op, *rest = raw
    value = rest[0] if rest else ""
    if not _ATTR_RE.match(attr):
        raise ConstraintError(f"attribute {attr!r} is not a valid attribute name")
    if op not in OPERATORS:
        raise ConstraintError(f"unknown operator {op!r}; known: {', '.join(OPERATORS)}")
    if op == "UNIQUE" and value:
        raise ConstraintError("UNIQUE takes no value")
    if op in ("MAX_PER", "GROUP_BY") and value:
        if not value.isdigit() or not 1 <= int(value) <= MAX_PER_LIMIT:
            raise ConstraintError(f"{op} needs a whole number from 1 to {MAX_PER_LIMIT}, not {value!r}")
    if op == "MAX_PER" and not value:
        raise ConstraintError("MAX_PER needs a number, e.g. [\"zone\", \"MAX_PER\", \"2\"]")
    if op in ("LIKE", "UNLIKE"):
        if not value:
            raise ConstraintError(f"{op} needs a regular expression")
        try:
            re.compile(value)
        except re.error as exc:
            raise ConstraintError(f"{value!r} is not a valid regular expression: {exc}") from None
    return Constraint(attr, op, value)
