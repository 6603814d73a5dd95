"""HTML mail bodies made safe to render inside the CRM (nh3 / ammonia, an allowlist sanitizer).

Kept: formatting, lists, tables and images from an allowlist of tags and attributes. Removed: scripts,
styles (elements and `style` attributes), event handlers, forms, iframes/objects/embeds, comments and
every URL scheme except http(s)/mailto/tel on links. Links get `target="_blank"` and
`rel="noopener noreferrer nofollow"`.

Images: `cid:` references (RFC 2392) are rewritten through `cid_map` {content_id: url} — the caller maps
them to attachment download URLs; unknown cids are dropped. Remote images follow `remote_images`:
"https" (default: https only — http would leak on mixed content), "all" (http and https) or "none"
(tracking pixels blocked). `data:` and every other scheme are always dropped.
"""
from __future__ import annotations

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
