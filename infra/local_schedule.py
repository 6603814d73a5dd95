"""EventBridge schedule expressions evaluated locally (moto never fires scheduled rules).

Supports what the app declares: `rate(N minute|minutes|hour|hours|day|days)` and
`cron(minutes hours day-of-month month day-of-week year)` (EventBridge User Guide, "Schedule expressions";
times in UTC). Fields take `*`, `?`, numbers, lists `a,b`, ranges `a-b` and steps `*/n` / `a/n`;
day-of-week is 1-7 = SUN-SAT or SUN..SAT. `L`, `W` and `#` are not supported (ValueError), so an
unsupported schedule fails loudly at start instead of silently never firing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _expand(field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """Values a cron field allows, or None for "any"."""
    if field in ("*", "?"):
        return None
    values: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return values


def _value(token: str, names: dict[str, int] | None) -> int:
    token = token.upper()
    if names and token in names:
        return names[token]
    if not token.isdigit():
        raise ValueError(f"unsupported cron token {token!r}")
    return int(token)


@dataclass(frozen=True)
class Schedule:
    expression: str
    every_seconds: int | None = None
    fields: tuple[set[int] | None, ...] = ()

    @classmethod
    def parse(cls, expression: str) -> "Schedule":
        expression = expression.strip()
        rate = _RATE.match(expression)
        if rate:
            unit = rate.group(2).rstrip("s")
            return cls(expression, every_seconds=int(rate.group(1)) * _UNIT_SECONDS[unit])
        cron = _CRON.match(expression)
        if not cron:
            raise ValueError(f"not a schedule expression: {expression!r}")
        minutes, hours, dom, month, dow, year = cron.group(1).split()
        fields = (_expand(minutes, 0, 59), _expand(hours, 0, 23), _expand(dom, 1, 31),
                  _expand(month, 1, 12, _MONTHS), _expand(dow, 1, 7, _DAYS), _expand(year, 1970, 2199))
        return cls(expression, fields=fields)

    def matches(self, moment: datetime) -> bool:
        """True when a cron schedule fires in the (UTC) minute of `moment`."""
        if self.every_seconds is not None:
            return False
        aws_weekday = (moment.isoweekday() % 7) + 1  # Python: Mon=1..Sun=7 -> AWS: Sun=1..Sat=7
        actual = (moment.minute, moment.hour, moment.day, moment.month, aws_weekday, moment.year)
        return all(allowed is None or value in allowed for allowed, value in zip(self.fields, actual))

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment` (rates fire every N seconds from `moment`)."""
        if self.every_seconds is not None:
            return moment + timedelta(seconds=self.every_seconds)
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self.matches(candidate):
                return candidate
            candidate += timedelta(minutes=1)
        raise ValueError(f"{self.expression} does not fire within a year")
