"""The parse budget: how much of a raw message the MIME parser may look at.

The stdlib parser (`email.feedparser`) costs about 2 µs and 80 bytes per line, and every line is matched
against the boundary of every enclosing multipart: a 50 MB body of soft line breaks is 25 M lines (≈ 2 GB,
minutes), 12,000 parts nested 1,000 deep take seconds per level and end in `RecursionError`. So before
parsing, one linear scan (C-speed regular expressions; Python runs only per structural line) finds where
the budget runs out, and the parser sees only the raw bytes before that point:

| budget | value | why |
|---|---|---|
| `MAX_PARSE_LINES` | 700,000 lines | a whole 50 MB message of base64 (76-character lines); ≈ 1.5 s, ≈ 60 MB |
| `MAX_PARSE_WORK` | 2,100,000 line × depth | a line at depth d is matched against d boundaries |
| `MAX_DEPTH` | 24 nested multipart / message parts | far above real mail; keeps the parser's recursion small |
| `MAX_CONTAINERS` | 256 multipart / message declarations | |
| `MAX_PARTS` | 2,000 boundary delimiter lines | |

Depth is estimated without parsing: a `Content-Type: multipart/...; boundary=B` line opens B, a `--B` line
closes every boundary opened after B and `--B--` closes B too; `message/*` opens a level that closes with its
enclosing boundary. Body text that looks like a header only makes the estimate (and so the cut) earlier.
The cut is deterministic, so `parse_message` and `attachment_content` number attachments alike; what lies
after it stays in the raw object (downloadable as `/raw`) and `parse_errors` says "mime: parse budget ...".
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MAX_PARSE_LINES = 700_000
MAX_PARSE_WORK = 2_100_000
MAX_DEPTH = 24
MAX_CONTAINERS = 256
MAX_PARTS = 2_000

_EVENT_BODY = (rb"(?=[-Cc])(?:(--[^\r\n]*)|(?i:content-type):[ \t]*(?:\r?\n[ \t]+)?((?i:multipart|message))/"
               rb"([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*))")
_EVENT_AT_START = re.compile(_EVENT_BODY)
_EVENT = re.compile(rb"\n" + _EVENT_BODY)     # a literal first byte lets `re` skip ahead fast
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))""", re.IGNORECASE)


@dataclass(frozen=True)
class Window:
    end: int                       # parse raw[:end]
    reason: str | None = None      # why it was cut (None: the whole message)


def _nth_line_end(raw: bytes, start: int, lines: int) -> int:
    """The offset just after the `lines`-th newline at or after `start` (len(raw) if there are fewer)."""
    pos = start
    step = 1 << 16
    while lines > 0 and pos < len(raw):
        chunk_end = min(len(raw), pos + step)
        count = raw.count(b"\n", pos, chunk_end)
        if count < lines:
            lines -= count
            pos = chunk_end
            step = min(step * 2, 1 << 24)
            continue
        while lines > 0:
            pos = raw.index(b"\n", pos, chunk_end) + 1
            lines -= 1
    return min(pos, len(raw))


def _surely_within(raw: bytes) -> bool:
    """Fast path for ordinary mail: every "content-type: multipart|message" line contains "multipart/" or
    "message/", so their count bounds the depth; with few lines no budget can run out."""
    if raw.count(b"\n") > MAX_PARSE_WORK // MAX_DEPTH or raw.count(b"\n--") >= MAX_PARTS:
        return False
    lowered = raw.lower()
    return lowered.count(b"multipart/") + lowered.count(b"message/") <= MAX_DEPTH


def parse_window(raw: bytes) -> Window:
    """How much of `raw` the parser may read (see the module docstring)."""
    if _surely_within(raw):
        return Window(len(raw))
    stack: list[bytes | None] = []      # open boundaries; None for a message/* level
    lines = work = containers = parts = 0
    position = 0

    def spend(until: int) -> int | None:
        """Account the lines in raw[position:until]; the cut offset if the budget runs out there."""
        nonlocal lines, work
        count = raw.count(b"\n", position, until)
        depth = max(1, len(stack))
        allowed = min(MAX_PARSE_LINES - lines, (MAX_PARSE_WORK - work) // depth)
        if count > allowed:
            return _nth_line_end(raw, position, max(0, allowed))
        lines += count
        work += count * depth
        return None

    scan_end = _nth_line_end(raw, 0, MAX_PARSE_LINES + 1)     # no budget reaches past this line
    first = _EVENT_AT_START.match(raw, 0, scan_end)
    for match in itertools.chain([first] if first else [], _EVENT.finditer(raw, 0, scan_end)):
        cut = spend(match.start())
        if cut is not None:
            return Window(cut, "mime: parse budget reached (lines); the rest is not parsed")
        position = match.start()
        if match.group(1) is not None:                          # a "--..." line
            line = match.group(1)[2:].rstrip(b" \t")
            closing = line.endswith(b"--") and line[:-2] in stack
            name = line[:-2] if closing else line
            if name in stack:
                parts += 1
                if parts > MAX_PARTS:
                    return Window(position, f"mime: more than {MAX_PARTS} parts; the rest is not parsed")
                del stack[stack.index(name) + (0 if closing else 1):]
            continue
        containers += 1
        if containers > MAX_CONTAINERS:
            return Window(position, f"mime: more than {MAX_CONTAINERS} multiparts; the rest is not parsed")
        found = _BOUNDARY.search(match.group(3)) if match.group(2).lower() == b"multipart" else None
        # None: a level no delimiter names (message/*, or an RFC 2231 `boundary*0=` this scan does not
        # reassemble); it counts for depth until a delimiter of an enclosing boundary closes it.
        stack.append((found.group(1) if found.group(1) is not None else found.group(2)) if found else None)
        if len(stack) > MAX_DEPTH:
            return Window(position, f"mime: nesting deeper than {MAX_DEPTH}; the rest is not parsed")
    cut = spend(len(raw))
    if cut is not None:
        return Window(cut, "mime: parse budget reached (lines); the rest is not parsed")
    return Window(len(raw))
