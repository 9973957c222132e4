"""Griffe extension for the API reference: Sphinx cross-reference roles in docstrings become links.

The code's docstrings use Sphinx roles (``:func:`save_weights```, ``:class:`~upsample.Weights```), which
mkdocstrings would print literally. Each role becomes an optional autorefs link to the name resolved in
the docstring's own scope: a link where that name is documented on the site, plain code where it is not
(private helpers, modules the reference leaves out), so the strict build never fails on one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`(?P<short>~?)(?P<name>[\w.]+)`")


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _identifier(scope: griffe.Object, name: str) -> str:
    """The full path ``name`` means inside ``scope`` (``name`` itself when it cannot be resolved)."""
    head, _, rest = name.partition(".")
    try:
        path = scope.resolve(head)
    except griffe.NameResolutionError:
        return name
    return f"{path}.{rest}" if rest else path


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is None:
                continue

            def link(match: re.Match[str], scope: griffe.Object = obj) -> str:
                name = match["name"]
                title = name.rsplit(".", 1)[-1] if match["short"] else name
                return f'<autoref identifier="{_identifier(scope, name)}" optional><code>{title}</code></autoref>'

            obj.docstring.value = ROLE.sub(link, obj.docstring.value)
