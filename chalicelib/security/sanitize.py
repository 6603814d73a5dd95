"""HTML mail bodies made safe to render inside the CRM (nh3 / ammonia, an allowlist sanitizer).

Kept: formatting, lists, tables and images from an allowlist of tags and attributes. Removed: scripts,
styles (elements and `style` attributes), event handlers, forms, iframes/objects/embeds, comments and
every URL scheme except http(s)/mailto/tel on links. Links get `target="_blank"` and
`rel="noopener noreferrer nofollow"`.

Images: `cid:` references (RFC 2392) are rewritten through `cid_map` {content_id: url} — the caller maps
them to attachment download URLs; unknown cids are dropped. Remote images follow `remote_images`:
"https" (default: https only — http would leak on mixed content), "all" (http and https) or "none"
(tracking pixels blocked). `data:` and every other scheme are always dropped.

Budget: nh3 (html5ever, in Rust, not interruptible) is quadratic in nesting depth — 200,000 nested `<div>`
take minutes. So before calling it, one linear scan of the tags measures the input: over `MAX_HTML_CHARS`
characters, an estimated nesting depth over `MAX_HTML_DEPTH`, or a total work (Σ depth over start tags)
over `MAX_HTML_WORK`, and the body is shown as escaped plain text in `<pre>` instead (`text_fallback`).
Elements that cannot nest (void elements) or close themselves (`p`, `li`, `td`, ...) are not counted.
"""
from __future__ import annotations

import html as html_lib
import re
from typing import Literal
from urllib.parse import unquote

import nh3

RemoteImages = Literal["https", "all", "none"]

TAGS = {"a", "abbr", "address", "b", "big", "blockquote", "br", "caption", "center", "cite", "code", "col",
        "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span",
        "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u",
        "ul", "var"}
DROP_WITH_CONTENT = {"script", "style", "title", "head", "template", "noscript", "iframe", "object", "embed",
                     "applet", "frame", "frameset", "form", "select", "textarea", "button", "svg", "math"}
_TABLE_ATTRS = {"align", "valign", "width", "height", "bgcolor", "border", "cellpadding", "cellspacing",
                "colspan", "rowspan"}
ATTRIBUTES = {
    "*": {"title", "dir", "lang", "align"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border"},
    "font": {"color", "face", "size"},
    "table": _TABLE_ATTRS, "td": _TABLE_ATTRS, "th": _TABLE_ATTRS, "tr": _TABLE_ATTRS,
    "col": {"span", "width"}, "colgroup": {"span", "width"},
    "ol": {"start", "type"}, "li": {"value"},
    "blockquote": {"cite"}, "q": {"cite"}, "del": {"cite"}, "ins": {"cite"},
}
URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}  # cid: is rewritten or dropped below
_LINK_PREFIXES = ("http://", "https://", "mailto:", "tel:")
LINK_REL = "noopener noreferrer nofollow"


MAX_HTML_CHARS = 2_000_000
MAX_HTML_DEPTH = 512
MAX_HTML_WORK = 20_000_000
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]{0,30})")
_ANY_TAG = re.compile(r"<[^<>]*>?")
_NOT_NESTING = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp",
                "thead", "tbody", "tfoot", "colgroup", "caption", "html", "head", "body"}


def within_budget(html: str) -> bool:
    """True when `html` is small and shallow enough for nh3 (see the module docstring)."""
    if len(html) > MAX_HTML_CHARS:
        return False
    depth = work = 0
    for match in _TAG.finditer(html):
        if match.group(2).lower() in _NOT_NESTING:
            continue
        if match.group(1):
            depth = max(0, depth - 1)
            continue
        depth += 1
        work += depth
        if depth > MAX_HTML_DEPTH or work > MAX_HTML_WORK:
            return False
    return True


_HIDDEN_TAG = re.compile(r"<(/?)(script|style|head|title|template)\b[^<>]{0,1000}>?", re.IGNORECASE)


def _drop_hidden(html: str) -> str:
    """Content of script/style/head/title/template removed in one pass (an unclosed one runs to the end)."""
    kept: list[str] = []
    open_name, position = None, 0
    for match in _HIDDEN_TAG.finditer(html):
        name = match.group(2).lower()
        if open_name is None and not match.group(1):
            kept.append(html[position:match.start()])
            open_name = name
        elif open_name == name and match.group(1):
            open_name, position = None, match.end()
    if open_name is None:
        kept.append(html[position:])
    return " ".join(kept)


def visible_text(html: str) -> str:
    """Tags (and script/style content) removed with linear passes (no HTML parser), entities decoded."""
    return html_lib.unescape(_ANY_TAG.sub(" ", _drop_hidden(html[:MAX_HTML_CHARS])))


def text_fallback(html: str) -> str:
    """Over-budget HTML shown safely: its text, escaped, in `<pre>`."""
    return f"<pre>{html_lib.escape(visible_text(html))}</pre>"


def _image_source(value: str, cid_map: dict[str, str], remote_images: RemoteImages) -> str | None:
    lowered = value.strip().lower()
    if lowered.startswith("cid:"):
        content_id = unquote(value.strip()[4:]).strip("<>")
        return cid_map.get(content_id) or cid_map.get(content_id.lower())
    if lowered.startswith("https://"):
        return value if remote_images in ("https", "all") else None
    if lowered.startswith("http://"):
        return value if remote_images == "all" else None
    return None


def sanitize_html(html: str, cid_map: dict[str, str] | None = None,
                  remote_images: RemoteImages = "https") -> str:
    """Safe HTML for display; `cid_map` maps Content-IDs (without <>) to URLs for inline images."""
    if not html:
        return ""
    if not within_budget(html):
        return text_fallback(html)
    cids = {k.strip("<>"): v for k, v in (cid_map or {}).items() if k}
    cids.update({k.lower(): v for k, v in list(cids.items())})

    def attribute_filter(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src":
            return _image_source(value, cids, remote_images)
        if attribute in ("href", "cite"):              # mail has no base URL: absolute links only
            return value if value.strip().lower().startswith(_LINK_PREFIXES) else None
        return value

    return nh3.clean(html, tags=TAGS, clean_content_tags=DROP_WITH_CONTENT, attributes=ATTRIBUTES,
                     attribute_filter=attribute_filter, strip_comments=True, link_rel=LINK_REL,
                     set_tag_attribute_values={"a": {"target": "_blank"}}, url_schemes=URL_SCHEMES)
