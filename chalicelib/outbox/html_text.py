"""A plain-text rendering of sanitized HTML (signatures and bodies of text-only mail).

Input is HTML that already went through `security/sanitize.py` (nh3): a small allowlisted tag set, no scripts
or styles. It is read with the standard library's HTML tokenizer (`html.parser`, which follows the HTML5
tokenization rules for tags, attributes and character references), never with regular expressions over the
markup. Rendering rules: whitespace inside text collapses as HTML renders it (except in `<pre>`); block
elements start a new line, paragraphs and headings are separated by a blank line; `<br>` breaks the line;
list items start with "- " (numbered in `<ol>`); a link whose text differs from its target is written
"text <target>"; an image is its alt text in brackets; `<hr>` is a line of dashes; table cells are separated
by two spaces, rows by a line break.
"""
from __future__ import annotations

from html.parser import HTMLParser

BLOCKS = {"address", "blockquote", "center", "dd", "div", "dl", "dt", "table", "tbody", "tfoot", "thead", "tr",
          "ul", "ol", "caption"}
PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre"}
_WHITESPACE = " \t\n\r\f"


class _Renderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.blank_wanted = False
        self.pre = 0
        self.lists: list[list] = []          # [kind, counter]
        self.links: list[tuple[str | None, int]] = []  # (href, position in the current line's text)
        self.link_text: list[list[str]] = []

    # -- output helpers ---------------------------------------------------------------------------------------
    def _newline(self, blank: bool = False) -> None:
        if self.lines[-1].strip():
            self.lines.append("")
        if blank:
            self.blank_wanted = True

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.blank_wanted and len(self.lines) > 1 and self.lines[-2].strip() and not self.lines[-1]:
            self.lines.insert(len(self.lines) - 1, "")
        self.blank_wanted = False
        parts = text.split("\n")
        self.lines[-1] += parts[0]
        for part in parts[1:]:
            self.lines.append(part)
        for buffer in self.link_text:
            buffer.append(text)

    # -- tokens ------------------------------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs) -> None:
        attributes = dict(attrs)
        if tag == "br":
            self.lines.append("")
        elif tag == "hr":
            self._newline()
            self._write("-" * 20)
            self._newline()
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self._write(f"[{alt}]")
        elif tag == "a":
            self.links.append((attributes.get("href"), 0))
            self.link_text.append([])
        elif tag in ("ul", "ol"):
            self._newline()
            self.lists.append([tag, 0])
        elif tag == "li":
            self._newline()
            if self.lists and self.lists[-1][0] == "ol":
                self.lists[-1][1] += 1
                marker = f"{self.lists[-1][1]}. "
            else:
                marker = "- "
            self._write("  " * max(0, len(self.lists) - 1) + marker)
        elif tag in ("td", "th"):
            if self.lines[-1].strip():
                self._write("  ")
        elif tag in PARAGRAPHS:
            self._newline(blank=True)
            if tag == "pre":
                self.pre += 1
        elif tag in BLOCKS:
            self._newline()

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, _ = self.links.pop()
            text = "".join(self.link_text.pop()).strip()
            target = (href or "").strip()
            shown = target[7:] if target.lower().startswith("mailto:") else target
            if target and shown != text and target != text:
                self._write(f" <{shown}>")
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._newline()
        elif tag in PARAGRAPHS:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._newline(blank=True)
        elif tag in BLOCKS or tag == "li":
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.pre:
            self._write(data)
            return
        collapsed = " ".join(data.split())
        if not collapsed:
            if data and self.lines[-1] and not self.lines[-1].endswith(" "):
                self._write(" ")
            return
        if data[0] in _WHITESPACE and self.lines[-1] and not self.lines[-1].endswith(" "):
            collapsed = " " + collapsed
        if data[-1] in _WHITESPACE:
            collapsed += " "
        if not self.lines[-1].strip():
            collapsed = collapsed.lstrip()
        self._write(collapsed)

    def text(self) -> str:
        lines = [line.rstrip() for line in self.lines]
        while lines and not lines[0]:
            lines.pop(0)
        while lines and not lines[-1]:
            lines.pop()
        out: list[str] = []
        for line in lines:
            if not line and out and not out[-1]:
                continue           # at most one blank line in a row
            out.append(line)
        return "\n".join(out)


def html_to_text(sanitized_html: str | None) -> str:
    """The text rendering of already sanitized HTML ("" for None/empty)."""
    if not sanitized_html:
        return ""
    renderer = _Renderer()
    renderer.feed(sanitized_html)
    renderer.close()
    return renderer.text()
