"""Crontab lines, pure: the grammar noops-init runs (imagebuild/init/noops-init.c), checked at build
time so a line that would not run is refused with its layer, file and line number.

    entry    := schedule command | "@reboot" command | "@every" N("s"|"m"|"h") command
    schedule := minute hour day-of-month month day-of-week      (UTC)
    field    := item ("," item)*      item := ("*" | N | N "-" M) ["/" STEP]
    variable := NAME "=" value        (the environment of every job)

Days: when both day fields are restricted, either matching is enough (Vixie cron); 7 is Sunday.
``matches`` exists for the parser's table tests, which run the same rows against noops-init.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_EVERY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smh])")


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    fields: tuple[frozenset[int], ...]
    dom_any: bool
    dow_any: bool


@dataclass(frozen=True)
class Line:
    """One meaningful crontab line: a job (``key`` is its command) or a variable (``key`` its name)."""
    kind: str        # "job" or "var"
    key: str
    text: str        # the line as written, stripped


def parse_field(text: str, index: int) -> frozenset[int]:
    lo, hi = _BOUNDS[index]
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or not 1 <= int(step_text) <= hi:
                raise CronError(f"{_NAMES[index]} {text!r}: the step must be 1 to {hi}")
            step = int(step_text)
        if base == "*":
            a, b = lo, hi
        else:
            first, dash, last = base.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise CronError(f"{_NAMES[index]} {text!r}: expected *, N or N-M")
            a = int(first)
            b = int(last) if dash else (hi if slash else a)
        if not lo <= a <= b <= hi:
            raise CronError(f"{_NAMES[index]} {text!r}: out of {lo}-{hi}")
        values.update(range(a, b + 1, step))
    if index == 4 and 7 in values:
        values.add(0)
    return frozenset(values)


def parse_schedule(text: str) -> Schedule:
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
    return Schedule(tuple(parse_field(p, i) for i, p in enumerate(parts)), parts[2] == "*", parts[4] == "*")


def matches(schedule: Schedule, unix_time: int) -> bool:
    t = time.gmtime(unix_time)
    minute, hour, dom, month, dow = schedule.fields
    if t.tm_min not in minute or t.tm_hour not in hour or t.tm_mon not in month:
        return False
    day, weekday = t.tm_mday in dom, (t.tm_wday + 1) % 7 in dow   # Python: Monday 0; cron: Sunday 0
    if not schedule.dom_any and not schedule.dow_any:
        return day or weekday
    return day and weekday


def parse_line(raw: str) -> Line | None:
    """None for a blank line or a comment; CronError when the line would not run."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    if _VAR.match(line):
        return Line("var", line.split("=", 1)[0], line)
    head, _, rest = line.partition(" ")
    rest = rest.strip()
    if head == "@reboot":
        command = rest
    elif head == "@every":
        period, _, command = rest.partition(" ")
        if not _EVERY.fullmatch(period) or float(period[:-1]) <= 0:
            raise CronError(f"@every {period!r}: expected a period like 30s, 5m or 1h")
    elif head.startswith("@"):
        raise CronError(f"{head}: only @reboot and @every are supported (or 5 fields)")
    else:
        fields = line.split(None, 5)
        if len(fields) < 6:
            raise CronError("expected 5 schedule fields and a command")
        parse_schedule(" ".join(fields[:5]))
        command = fields[5]
    command = command.strip()
    if not command:
        raise CronError("the command is missing")
    return Line("job", command, line)
