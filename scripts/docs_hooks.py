"""MkDocs hooks of the documentation site (mkdocs.yml: hooks), run by ``make docs``.

The docstrings name other objects with Sphinx roles (:class:`~spark_ap.AffinityPropagation`),
which mkdocstrings leaves as they are: on the API page they become a code span of the name,
shortened to its last part when the role says so (``~``), as Sphinx shows them.
"""

import re

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def _name(match: re.Match) -> str:
    short, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if short else name}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(_name, html)
