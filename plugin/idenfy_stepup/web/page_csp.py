"""What in a rendered page our Content-Security-Policy (web/headers.py) would block.

The policy allows scripts, styles and images from our own origin only, and nothing inline: an
operator's template that uses an inline script or style, an event-handler attribute, or an
image or stylesheet from elsewhere renders fine but breaks in the browser (and logs a CSP
violation on every page). ``check-config`` names each of these.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .page_hooks import elements_of

# Tag → the attributes by which it loads something (link: only for the rel values below).
_LOADS = {
    "img": ("src", "srcset"),
    "script": ("src",),
    "link": ("href",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "input": ("src",),
}
_LOADING_RELS = {"stylesheet", "icon", "preload", "modulepreload", "manifest", "apple-touch-icon"}


def csp_conflicts(html: str, own_origin: str) -> list[str]:
    found: list[str] = []
    for element in elements_of(html):
        tag, attrs = element.tag, element.attrs
        if tag == "script" and "src" not in attrs:
            found.append("an inline <script>")
        if tag == "style":
            found.append("a <style> element")
        found += [
            f"an event-handler attribute ({name}) on <{tag}>"
            for name in attrs
            if name.startswith("on")
        ]
        if "style" in attrs:
            found.append(f"a style attribute on <{tag}>")
        if tag == "link" and not _LOADING_RELS & set(attrs.get("rel", "").lower().split()):
            continue
        for name in _LOADS.get(tag, ()):
            for url in _urls(attrs.get(name, ""), srcset=name == "srcset"):
                if not _same_origin(url, own_origin):
                    found.append(f"<{tag} {name}> from another origin ({url[:80]})")
    return list(dict.fromkeys(found))


def _urls(value: str, *, srcset: bool) -> list[str]:
    if not srcset:
        return [value.strip()] if value.strip() else []
    return [part.split()[0] for part in value.split(",") if part.split()]


def _same_origin(url: str, own_origin: str) -> bool:
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return True  # a path on our own origin
    return f"{parts.scheme}://{parts.netloc}" == own_origin
