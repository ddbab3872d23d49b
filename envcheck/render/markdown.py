"""``--format markdown``: what a user pastes into a GitHub issue, each kind's written by its own render
module (``envcheck.<kind>.render``) with the cells and code spans of :mod:`envcheck.render.common`, which
survive the table syntax (pipes and newlines in values)."""

from envcheck.render import output_format

FORMAT = output_format("markdown", "to paste into an issue", suffixes=(".md",))
