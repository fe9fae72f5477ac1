"""What in an HTML page would not open offline: every ``<img src>``, ``<a href>``, ``<link href>``
and ``<script src>`` is checked (a data: URI must decode as a PNG, a relative path must name an
existing file, ``#id`` an element of the page); a link to the network is a failure, because the
pages must read without one."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

PNG = b"\x89PNG\r\n\x1a\n"


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []  # (tag, target)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("src", "href"):
            if attrs.get(name) is not None and tag in ("img", "a", "link", "script", "source"):
                self.refs.append((tag, attrs[name]))


def references(page: Path) -> list[tuple[str, str]]:
    """(tag, target) of every image, link, style sheet and script the page refers to."""
    parser = _Refs()
    parser.feed(Path(page).read_text(encoding="utf-8"))
    return parser.refs


def broken(page: Path) -> list[str]:
    """One line per reference of ``page`` that would not resolve offline; [] when all do."""
    page = Path(page)
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    problems = []
    for tag, target in parser.refs:
        url = urlparse(target)
        if url.scheme == "data":
            head, _, payload = target.partition(",")
            data = base64.b64decode(payload) if head.endswith(";base64") else b""
            if tag == "img" and not data.startswith(PNG):
                problems.append(f"{tag} {target[:40]}...: not a base64 PNG")
        elif url.scheme or url.netloc:
            problems.append(f"{tag} {target}: needs the network")
        elif not url.path:
            if url.fragment not in parser.ids:
                problems.append(f"{tag} {target}: no element with that id")
        else:
            path = (page.parent / unquote(url.path)).resolve()
            if not path.is_file():
                problems.append(f"{tag} {target}: no such file")
            elif tag == "img" and not path.read_bytes().startswith(PNG):
                problems.append(f"{tag} {target}: not a PNG")
    return problems
