"""``--format text``: the human report, each kind's written by its own render module
(``envcheck.<kind>.render``) with the marks and check lines of :mod:`envcheck.render.common`.

Every text report reads the structured, already-redacted document, never live objects. On a terminal
lines wrap at word boundaries with a hanging indent; in pipes and logs lines are never wrapped, colour is
dropped and the marks become ASCII words, so pasted reports stay readable.
"""

from envcheck.render import output_format

FORMAT = output_format("text", "for people", suffixes=(".txt",))
