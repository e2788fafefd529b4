"""Check the built book for broken images and internal links.

    python scripts/check_html.py _build/html

Walks every page (.html file outside _static/ and _sources/) and reports, as ``page: problem``:
- an ``<img src>``, ``<source src>``, ``<script src>``, ``<link href>`` or
  ``<a href>`` that points to a local file which does not exist;
- a link to ``#anchor`` (on the same page or on another local page) whose target
  has no element with that ``id`` (or ``name``);
- an ``<img>`` without a ``src``, or a ``<figure>`` without an image in it.

External links (http, https, mailto, protocol-relative ``//``) and ``data:`` URIs
are not followed. Exits 1 when there is any problem, 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL_SCHEMES = ("http", "https", "mailto", "ftp", "tel", "javascript", "data")
SKIPPED_DIRS = ("_static", "_sources")   # theme templates and copied sources, not pages
CHECKED = {("img", "src"), ("source", "src"), ("script", "src"), ("link", "href"), ("a", "href")}
IMAGE_TAGS = ("img", "svg", "object", "video", "picture")


class PageParser(HTMLParser):
    """Collects the ids of one page, the references it makes, and figures without images."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []        # (tag, attribute, url)
        self.problems: list[str] = []
        self._figures: list[bool] = []                     # one flag per open <figure>: has an image

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "img" and not attrs.get("src"):
            self.problems.append(f"<img> without src (alt={attrs.get('alt')!r})")
        for t, attr in CHECKED:
            if tag == t and attrs.get(attr) is not None:
                self.refs.append((tag, attr, attrs[attr]))
        if tag == "figure":
            self._figures.append(False)
        elif tag in IMAGE_TAGS and self._figures:
            self._figures[-1] = True

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "figure" and self._figures:
            if not self._figures.pop():
                self.problems.append("<figure> without an image in it")


def html_pages(root: Path) -> list[Path]:
    """Every built page: the .html files outside the theme's _static and _sources folders."""
    return sorted(p for p in root.rglob("*.html")
                  if not set(p.relative_to(root).parts[:-1]) & set(SKIPPED_DIRS))


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def check(root: Path) -> list[str]:
    root = root.resolve()
    pages = html_pages(root)
    parsed = {p: parse(p) for p in pages}
    problems = []
    for page, info in parsed.items():
        name = page.relative_to(root)
        problems += [f"{name}: {msg}" for msg in info.problems]
        for tag, attr, url in info.refs:
            parts = urlsplit(url.strip())
            if parts.scheme in EXTERNAL_SCHEMES or parts.netloc or url.strip().startswith("//"):
                continue
            if parts.scheme:
                problems.append(f"{name}: <{tag} {attr}={url!r}>: unknown scheme {parts.scheme!r}")
                continue
            path = unquote(parts.path)
            if path:
                target = (root / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
                target = target.resolve()
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_file():
                    problems.append(f"{name}: <{tag} {attr}={url!r}>: {target.relative_to(root) if target.is_relative_to(root) else target} does not exist")
                    continue
            else:
                target = page
            fragment = unquote(parts.fragment)
            if fragment and tag == "a" and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse(target).ids
                if fragment not in ids:
                    problems.append(f"{name}: <a href={url!r}>: no element with id {fragment!r} in "
                                    f"{target.relative_to(root) if target.is_relative_to(root) else target}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check built HTML for broken images and internal links.")
    p.add_argument("folder", type=Path, nargs="?", default=Path("_build/html"))
    args = p.parse_args(argv)
    if not args.folder.is_dir():
        print(f"{args.folder} is not a folder (build the book first: jupyter-book build .)", file=sys.stderr)
        return 2
    pages = html_pages(args.folder.resolve())
    problems = check(args.folder)
    for line in problems:
        print(line)
    print(f"{len(pages)} pages checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
