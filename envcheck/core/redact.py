"""Keep secrets out of everything envcheck prints, so a report is safe to paste into a public issue.

Used by the environment-variable checks and by the JSON renderer. The API is deliberately tiny:

* :func:`is_secret_name` — does this variable *name* look like it holds a secret (``HF_TOKEN``,
  ``WANDB_API_KEY``, ``AWS_SECRET_ACCESS_KEY``)? Then its value is never shown.
* :func:`redact_value` — a value that is shown still loses credentials embedded in it
  (``https://user:pass@host``, ``?X-Amz-Signature=…``) and well-known token shapes (``hf_…``, ``ghp_…``).
* :func:`redact_env` — a mapping with both rules applied.
* :func:`scrub` — free text (a summary, a traceback) with every secret value of an environment
  replaced, for renderers that cannot know where a value may have leaked to.
* :func:`redact_tree` — :func:`scrub` applied to every string (keys too) of a JSON-like report, once,
  before any renderer sees it: a renderer that escapes text (JSON turns ``"`` into ``\\"``, newlines into
  ``\\n``, non-ASCII into ``\\uXXXX``) would otherwise hide a secret from a search of its output.

Four mechanisms, each catching what the others cannot: the values of secret-named variables (any
shape), URL userinfo, secret-named ``name=value`` fields, and well-known token shapes. Redaction
replaces the secret alone: the punctuation, quotes and brackets around it stay, so the text still reads.

Every pattern reads its text in linear time, whatever the text: the strings come from other people (host
names, process names, a thousand nodes' reports), and one pattern that backtracked made a 1 MiB host name cost
minutes. Each pattern's comment says why it cannot backtrack; ``benchmarks/redact_cost.py`` measures it.

Names are judged by their *word parts* (split on ``_``, ``-``, ``.`` and camelCase) rather than by
substring, so ``TOKENIZERS_PARALLELISM`` and ``KEYBOARD_LAYOUT`` stay visible while ``HF_TOKEN`` and
``apiKey`` do not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"

#: Word parts that mark a name as secret.
_SECRET_PARTS = frozenset(
    {
        "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASS", "PASSPHRASE", "PWD",
        "KEY", "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "PRIVATE", "SESSION", "COOKIE",
        "COOKIES", "SIGNATURE", "SIG", "DSN", "PAT", "CONNECTION",
    }
)  # fmt: skip
#: Glued forms (``AUTHTOKEN``, ``CLIENTSECRET``, ``ACCESSKEY``): a part that *ends* with one of these.
_SECRET_SUFFIXES = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY", "ACCESSKEY", "SECRETKEY", "PRIVATEKEY")
#: Names that contain a secret-looking part but are well known not to hold one.
_NOT_SECRET = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "XAUTHORITY"})

_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
#: ``scheme://user:password@host`` — the password (and user) go, the host stays for diagnosis. The userinfo
#: runs to the *last* ``@`` of the authority, as urllib (and so pip) reads it, so a password holding a raw ``@``
#: goes whole; a user alone goes too, since ``https://<token>@host`` is how GitHub and GitLab take tokens.
#:
#: Linear time: a scheme is tried only where a run of scheme characters *starts* (the look-behind), with the
#: run's leading digits and signs in ``lead``, so each run is read once. Written as
#: ``[A-Za-z][A-Za-z0-9+.-]*://`` alone, the engine tried a scheme at every letter of a run and read the rest
#: of the run each time: a 1 MiB host name took minutes. The userinfo stops at ``/``, which every later
#: ``://`` holds, so no byte is read by two userinfo scans either.
#: One slash is taken as two: a URL that became a path (``mkdir -p`` of it, a mirror's directory) has its
#: ``//`` made ``/`` (``reports/https:/user:pw@host/doctor.json``), its password still in it.
_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<lead>[0-9+.\-]*)(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://?)[^/?#\s]+@"
)
#: Where a coloured log line's SGR sequence (``ESC[0m``, ``ESC[1;32m``, ``ESC[38;5;208m``) ends: a token or a
#: field name right after one starts a word as a reader sees it, though ``m`` glues it to a word for ``\b``.
#: Fixed-width look-behinds, each checked in constant time, behind one for the ``m`` that most places fail.
_AFTER_SGR = r"(?<=m)(?:(?<=\x1b\[m)|(?<=[\[;]\dm)|(?<=[\[;]\d\dm)|(?<=[\[;]\d\d\dm))"
#: Token shapes that are secret whatever variable holds them (Hugging Face, GitHub, GitLab, OpenAI-style,
#: Slack, AWS access key ids). Linear: a shape starts only at the start of a word, with a fixed prefix and one
#: class after it, so each word is read from its start once.
_TOKEN_FORMS = (
    ("hf_", r"[A-Za-z0-9]{20,}"),
    ("gh[pousr]_", r"[A-Za-z0-9]{20,}"),
    ("github_pat_", r"[A-Za-z0-9_]{20,}"),
    ("glpat-", r"[A-Za-z0-9_\-]{20,}"),
    ("sk-", r"[A-Za-z0-9_\-]{20,}"),
    ("xox[abprs]-", r"[A-Za-z0-9\-]{10,}"),
    ("AKIA", r"[A-Z0-9]{16}"),
)
_TOKEN_SHAPES = re.compile(rf"(?:\b|{_AFTER_SGR})(?:{'|'.join(prefix + rest for prefix, rest in _TOKEN_FORMS)})\b")
#: ``name=value`` fields in free text: query parameters of presigned URLs (``X-Amz-Signature``, SAS ``sig``,
#: ``?token=``), connection strings (``AccountKey=...;``), ``HF_TOKEN=...`` in a quoted command line,
#: ``api_key='...'`` in a repr. The value goes when the name is secret-looking by the same rule as variable
#: names (:func:`is_secret_name`). A quoted value runs to its closing quote; a bare one to a separator, less
#: any punctuation that ends it (``(token=abc),`` keeps its ``),``), as a URL in prose is read. Linear: a name
#: starts only where a run of name characters starts (the look-behind), and a quoted value that finds no
#: closing quote is the only one reading on: a later field's opening quote would have closed it.
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_FIELDS = re.compile(rf"(?:(?<![\w\-])|{_AFTER_SGR})(?P<name>[A-Za-z][\w\-]*)=(?P<value>{_QUOTED}|[\"']?[^&;\s\"']+)")
#: ``"name": "value"`` in JSON or a Python dict's repr (a config printed in a traceback). Linear: a name runs
#: from one quote to the next, and the value as in ``_FIELDS``.
_QUOTED_KEYS = re.compile(rf"(?P<q>[\"'])(?P<name>[A-Za-z][\w\-.]*)(?P=q)(?P<sep>\s*:\s*)(?P<value>{_QUOTED})")
#: Punctuation that ends a sentence or closes a bracket, never taken as the end of a bare value.
_TRAILING = ".,:!?)]}"
#: Secret values shorter than this are not scrubbed from free text: "1" or "true" would mangle the report.
_MIN_SCRUB_LEN = 6


def is_secret_name(name: str) -> bool:
    """True when a variable called ``name`` probably holds a secret, so its value must not be shown."""
    if name.upper() in _NOT_SECRET:
        return False
    parts = [p.upper() for p in _PARTS.findall(name)]
    return any(p in _SECRET_PARTS or p.endswith(_SECRET_SUFFIXES) for p in parts)


#: What every pattern of :func:`redact_value` needs somewhere in a text to match at all: ``@`` (URL
#: userinfo), ``=`` (a field), ``:`` (a quoted key), or a token shape's prefix. Most strings of a report
#: (host names, UUIDs, versions, a fleet's ten thousand node names) hold none, and one search for these
#: is several times cheaper than the four substitutions. Every alternative starts with a literal
#: character (``@|=|:``, not ``[@=:]``): the engine then skips to the next place one of those eight
#: characters stands, where a class among the alternatives made it try every alternative at every
#: character (a GPU's UUID: 1.9 → 0.5 µs; a fleet's tail looks up a hundred thousand such strings).
_MAYBE_SECRET = re.compile("@|=|:|" + "|".join(prefix for prefix, _ in _TOKEN_FORMS))


def redact_value(value: str) -> str:
    """``value`` without credentials embedded in URLs, secret ``name=value`` fields and well-known token shapes."""
    return _substitute(value) if _MAYBE_SECRET.search(value) else value


def _substitute(value: str) -> str:
    """Every pattern of :func:`redact_value` applied in turn (what it does where the prefilter finds a
    text may hold a secret)."""
    value = _URL_CREDENTIALS.sub(lambda m: f"{m['lead']}{m['scheme']}{REDACTED}@", value)
    value = _FIELDS.sub(_field, value)
    value = _QUOTED_KEYS.sub(_field, value)
    return _TOKEN_SHAPES.sub(REDACTED, value)


def _field(match: re.Match[str]) -> str:
    """A ``name=value`` or ``"name": "value"`` match, its value redacted when the name is secret-looking."""
    if not is_secret_name(match["name"]):
        return match[0]
    value = match["value"]
    keep = match[0][: match.start("value") - match.start()]
    quote = value[0] if value[0] in "\"'" else ""
    if quote and len(value) > 1 and value[-1] == quote:  # quoted: keep the quotes
        return keep + (f"{quote}{REDACTED}{quote}" if len(value) > 2 else value)
    core = value[len(quote) :].rstrip(_TRAILING)  # bare: keep the punctuation that ends it
    return keep + (f"{quote}{REDACTED}{value[len(quote) + len(core) :]}" if core else value)


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` that is safe to print: secret-looking names lose their value entirely."""
    return {name: REDACTED if is_secret_name(name) else redact_value(value) for name, value in env.items()}


def scrub(text: str, env: Mapping[str, str]) -> str:
    """``text`` with the value of every secret-looking variable of ``env`` replaced, wherever it appears."""
    return scrubber(env)(text)


def scrubber(env: Mapping[str, str]) -> Callable[[str], str]:
    """:func:`scrub` bound to ``env``, for a caller that scrubs many texts (every string of a report, every
    line written to stderr): the forms of its secrets are worked out once, not once per text."""
    forms = _secret_forms(env)
    if not forms:
        return redact_value  # no secret values to look for: one call less for each of a report's strings
    return lambda text: _scrub(text, forms)


_NUMBERS = (int, float, bool)
#: How many new texts :meth:`remembered.all` joins for one search of the prefilter.
_JOINED = 256


class remembered:  # noqa: N801 - used as a function
    """A scrubber (:func:`scrubber`) that scrubs each distinct text once: a report repeats its strings (a
    fleet's ten thousand nodes share their checks' words and fixes). ``done`` is what it has scrubbed,
    for a caller that looks a text up before calling."""

    def __init__(self, clean: Callable[[str], str]) -> None:
        self.clean = clean
        self.done: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        found = self.done.get(text)
        if found is None:
            found = self.done[text] = self.clean(text)
        return found

    def new(self, text: str) -> str:
        """:meth:`__call__` for a text not looked up yet (the callers below have just looked)."""
        found = self.done[text] = self.clean(text)
        return found

    def all(self, texts: Iterable[str]) -> list[str]:
        """Each of ``texts`` scrubbed, those already seen looked up without a call (ten thousand host
        names in a fleet's lists)."""
        texts = list(texts)
        if self.clean is redact_value:
            self._passed(texts)
        known, new = self.done.get, self.new
        return [known(text) or new(text) for text in texts]

    def _passed(self, texts: list[str]) -> None:
        """Each new text of ``texts`` in which :func:`redact_value`'s prefilter finds nothing, marked as its
        own scrubbed form, a few hundred texts to one search: a fleet names 80 000 GPUs by their UUIDs, each
        new, and one search over their joined text is far cheaper than a call and a search each. Exact: no
        alternative of the prefilter holds the newline that joins them, so a match lies within one text;
        a slice with a match anywhere is left to the calls."""
        done = self.done
        fresh = [text for text in texts if text not in done]
        for start in range(0, len(fresh), _JOINED):
            some = fresh[start : start + _JOINED]
            if _MAYBE_SECRET.search("\n".join(some)) is None:
                done.update(zip(some, some, strict=True))

    def record(self, value: dict[str, Any]) -> dict[str, Any]:
        """A flat record (a fix, a report's reference, a problem as its ``to_json`` writes it) with its
        strings scrubbed, one level of nested record included (a problem's fix)."""
        known, new = self.done.get, self.new
        return {
            key: (known(v) or new(v)) if type(v) is str else self.record(v) if type(v) is dict else v
            for key, v in value.items()
        }


def redact_tree(value: Any, env: Mapping[str, str]) -> Any:
    """A copy of the JSON-like ``value`` (dicts, lists, tuples, scalars) with :func:`scrub` applied to every
    string in it, dict keys included. Call it on the structured report before rendering: redacting the
    rendered text instead would miss a secret the renderer escaped."""
    seen = remembered(scrubber(env))
    known, text = seen.done.get, seen.new

    def walk(item: Any) -> Any:
        # The plain JSON types by exact type first, and a string already scrubbed looked up without a
        # call of text(): a fleet's report holds millions of values, most of them a few distinct keys.
        kind = type(item)
        if kind is str:
            return known(item) or text(item)
        if kind is dict:
            return {
                (known(key) or text(key)) if type(key) is str else walk(key): (known(inner) or text(inner))
                if type(inner) is str
                else walk(inner)
                for key, inner in item.items()
            }
        if kind is list:
            return [
                (known(inner) or text(inner))
                if type(inner) is str
                else inner
                if type(inner) in _NUMBERS
                else walk(inner)
                for inner in item
            ]
        if kind in _NUMBERS or item is None:
            return item
        if isinstance(item, str):
            return seen(item)
        if isinstance(item, Mapping):
            return {walk(key): walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        if isinstance(item, tuple):  # a named tuple becomes a plain one: JSON knows arrays only
            return tuple(walk(inner) for inner in item)
        return item

    return walk(value)


def _secret_forms(env: Mapping[str, str]) -> list[str]:
    """Every form in which a secret value of ``env`` may reach text, longest first: the value itself, each
    of its lines stripped (a token read from a file keeps its newline; a traceback splits lines), and those
    as JSON and ``repr`` escape them (a message that quotes the value, ``'p\\"w'``, or ``"caf\\u00e9"``)."""
    forms: set[str] = set()
    for name, value in env.items():
        if not is_secret_name(name):
            continue
        for text in {value, *(line.strip() for line in value.splitlines())}:
            forms |= {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}
    return sorted((form for form in forms if len(form) >= _MIN_SCRUB_LEN), key=len, reverse=True)


def _scrub(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return redact_value(text)
