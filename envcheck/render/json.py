"""``--format json``: the report as exactly one strict JSON object (RFC 8259: no NaN or Infinity, which
``allow_nan=False`` enforces; the report builders already turned non-finite numbers into null), ASCII
only so that any output encoding (``LC_ALL=C``, ``PYTHONIOENCODING=ascii``) carries it unchanged. It
is the same for every kind of report: the document is the report."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from envcheck.render import RenderOptions, output_format, renders

if TYPE_CHECKING:
    from rich.console import Console

FORMAT = output_format("json", "one object", suffixes=(".json",))


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=True)


@renders("json")
def render_json(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    console.file.write(dumps(document) + "\n")
