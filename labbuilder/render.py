"""Render libvirt XML from the Jinja2 templates in domain_templates/.

Autoescape and StrictUndefined: no user text reaches XML unescaped, and a missing value
is an error naming the template and line, not an empty attribute.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2
from lxml import etree

OWNER_NS = "urn:labbuilder:owner:1"
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "domain_templates"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_xml(template: str, **values) -> str:
    """Render `template` (e.g. 'domain.xml.j2') and check the result is well-formed XML."""
    text = _env().get_template(template).render(ns=OWNER_NS, **values)
    etree.fromstring(text.encode())  # raises on malformed output
    return text
