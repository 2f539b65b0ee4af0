"""
Sphinx configuration for the mailclient documentation.

Build with::

    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

The reference pages are written by hand (the code's docstrings are Epytext,
which autodoc does not render); the examples under C{docs/examples} are
included verbatim and run by C{tests/test_doc_examples.py}.
"""

from __future__ import annotations

import configparser
import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_setup = configparser.ConfigParser()
_setup.read(ROOT / "setup.cfg", encoding="utf-8")

project = "mailclient"
author = "the mailclient developers"
copyright = f"{datetime.date.today().year}, {author}"
release = _setup.get("metadata", "version", fallback="unknown")
version = release

extensions: list[str] = []
nitpicky = False
root_doc = "index"
exclude_patterns = ["_build", "spec", "examples", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
default_role = "literal"
highlight_language = "python3"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"mailclient {release}"
html_theme_options = {
    "description": "A correct, safe and fast ESMTP client for Twisted",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_static_path: list[str] = []

_NEWS = ROOT / "NEWS.rst"
_FRAGMENTS = ROOT / "newsfragments"
_FRAGMENT_TYPES = {
    "feature": "Features",
    "bugfix": "Bugfixes",
    "doc": "Documentation",
}
_NEWS_MARKER = ".. news-goes-here"


def _unreleased() -> str:
    """
    The news fragments not yet compiled into NEWS.rst, as reST.
    """
    sections = []
    for kind, title in _FRAGMENT_TYPES.items():
        items = [
            path.read_text("utf-8").strip()
            # 6.feature.rst, and 6.feature.1.rst for a second one
            for path in sorted(
                {*_FRAGMENTS.glob(f"*.{kind}.rst"), *_FRAGMENTS.glob(f"*.{kind}.*.rst")}
            )
        ]
        if items:
            body = "\n".join("- " + "\n  ".join(item.splitlines()) for item in items)
            sections.append(f"{title}\n{'^' * len(title)}\n\n{body}\n")
    if not sections:
        return ""
    return "Unreleased\n----------\n\n" + "\n".join(sections)


def _news(app: Any, docname: str, source: list[str]) -> None:
    """
    Fill the changelog: the unreleased news fragments, then NEWS.rst when
    it exists, else a note that nothing has been released yet.
    """
    if docname != "changelog" or _NEWS_MARKER not in source[0]:
        return
    parts = []
    unreleased = _unreleased()
    if unreleased:
        parts.append(unreleased)
    if _NEWS.exists():
        parts.append(".. include:: ../NEWS.rst\n")
    else:
        parts.append(
            "No version of mailclient has been released yet: everything "
            "above is unreleased, and NEWS.rst will be written by towncrier "
            "at the first release.\n"
            if unreleased
            else "No version of mailclient has been released yet.\n"
        )
    source[0] = source[0].replace(_NEWS_MARKER, "\n".join(parts))


def setup(app: Any) -> dict[str, Any]:
    """
    Register the changelog hook.
    """
    app.connect("source-read", _news)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
