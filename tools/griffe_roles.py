"""Griffe extension for the docs site: reStructuredText habits of the docstrings, in Markdown.

The package's docstrings use Sphinx roles (``:class:`UnifiedBuffer```, ``:meth:`to_host```),
which mkdocstrings would show as raw text. This extension rewrites each role when the
package is loaded: a target that is part of the public API documented on the site (a name in
``pydotcompute.__all__``, ``pydotcompute.jupyter.__all__`` or ``pydotcompute_widgets.__all__``,
or a member of one) becomes a cross-reference to its public path; anything else (the standard
library, private helpers) becomes inline code. A paragraph ending in ``::`` (reStructuredText's
literal-block marker) ends in ``:``. Used by ``mkdocs.yml``; the code is not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|exc|mod|obj):`(~?)([\w.]+)(\(\))?`")
#: reStructuredText's "text::" before an indented literal block; Markdown needs only "text:"
LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)

#: packages whose listed names are documented on the site under the package's path
PUBLIC_PACKAGES = ("pydotcompute", "pydotcompute.jupyter", "pydotcompute_widgets")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of a loaded package."""

    def __init__(self) -> None:
        super().__init__()
        self.public: dict[str, str] = {}  # canonical path -> public path

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Collect the package's public names, then rewrite its docstrings."""
        for path in PUBLIC_PACKAGES:
            if path.split(".")[0] != pkg.name:
                continue
            module = pkg if path == pkg.path else pkg.get_member(path.split(".", 1)[1])
            for name in module.exports or ():
                member = module.members.get(str(name))
                if member is None or name.startswith("__"):
                    continue
                target = member.target_path if member.is_alias else member.path
                self.public.setdefault(target, f"{module.path}.{name}")
                self.public[f"{module.path}.{name}"] = f"{module.path}.{name}"
        self._rewrite(pkg)

    def _rewrite(self, obj: Any) -> None:
        if obj.is_alias:
            return
        if obj.docstring is not None:
            text = ROLE.sub(lambda m: self._replace(obj, m), obj.docstring.value)
            obj.docstring.value = LITERAL_MARKER.sub(":", text)
        for member in obj.members.values():
            self._rewrite(member)

    def _replace(self, obj: Any, match: re.Match[str]) -> str:
        tilde, target, parens = match.group(1), match.group(2), match.group(3) or ""
        shown = (target.rsplit(".", 1)[-1] if tilde else target) + parens
        public = self._public_path(obj, target)
        if public is None:
            return f"`{shown}`"
        return f"[`{shown}`][{public}]"

    def _public_path(self, obj: Any, target: str) -> str | None:
        head, _, rest = target.partition(".")
        try:
            resolved = obj.resolve(head)
        except (griffe.NameResolutionError, KeyError, AttributeError):
            resolved = head
        full = f"{resolved}.{rest}" if rest else resolved
        # The longest documented prefix wins: a class, then its member.
        parts = full.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.public:
                return ".".join([self.public[prefix], *parts[i:]])
        return None
