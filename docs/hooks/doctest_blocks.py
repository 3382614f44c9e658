"""Griffe extension: doctest examples in docstrings become ``pycon`` code blocks, and
Sphinx roles (``:func:`name```) inline code.

The docstrings hold their examples as plain doctest paragraphs (``>>>`` lines and their
output, as pytest runs them); outside an "Examples" section Markdown would read them as
quotes and their output (``['a', 'b']``) as links. Each run of lines from a ``>>>`` line to
the next blank line is fenced instead.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _role(m: re.Match[str]) -> str:
    target = m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


def plain_roles(text: str) -> str:
    """Sphinx roles (``:func:`~a.b```) as inline code (``b``)."""
    return _ROLE.sub(_role, text)


def fence(text: str) -> str:
    """``text`` with every doctest run fenced as ``pycon``."""
    out: list[str] = []
    inside = False
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        if not fenced and not inside and stripped.startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            inside = True
        elif inside and stripped == "":
            out.append(f"{indent}```")
            inside = False
        out.append(line)
    if inside:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestBlocks(Extension):
    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence(plain_roles(obj.docstring.value))
