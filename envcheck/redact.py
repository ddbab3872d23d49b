"""Keep secrets out of everything envcheck prints, so a report is safe to paste into a public issue.

Used by the environment-variable checks and by the JSON renderer. The API is deliberately tiny:

* :func:`is_secret_name` — does this variable *name* look like it holds a secret (``HF_TOKEN``,
  ``WANDB_API_KEY``, ``AWS_SECRET_ACCESS_KEY``)? Then its value is never shown.
* :func:`redact_value` — a value that is shown still loses credentials embedded in it
  (``https://user:pass@host``) and well-known token shapes (``hf_…``, ``ghp_…``).
* :func:`redact_env` — a mapping with both rules applied.
* :func:`scrub` — free text (a summary, a traceback) with every secret value of an environment
  replaced, for renderers that cannot know where a value may have leaked to.

Names are judged by their *word parts* (split on ``_``, ``-``, ``.`` and camelCase) rather than by
substring, so ``TOKENIZERS_PARALLELISM`` and ``KEYBOARD_LAYOUT`` stay visible while ``HF_TOKEN`` and
``apiKey`` do not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]+@")
#: Token shapes that are secret whatever variable holds them (Hugging Face, GitHub, GitLab, OpenAI-style,
#: Slack, AWS access key ids).
_TOKEN_SHAPES = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{20,}"
    r"|sk-[A-Za-z0-9_\-]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[A-Z0-9]{16})\b"
)
#: ``name=value`` fields in free text: query parameters of presigned URLs (``X-Amz-Signature``, SAS ``sig``,
#: ``?token=``), connection strings (``AccountKey=...;``), ``HF_TOKEN=...`` in a quoted command line. The
#: value goes when the name is secret-looking by the same rule as variable names (:func:`is_secret_name`).
_FIELDS = re.compile(r"(?<![\w\-])(?P<name>[A-Za-z][\w\-]*)=(?P<value>[^&;\s\"']+)")
#: Secret values shorter than this are not scrubbed from free text: "1" or "true" would mangle the report.
_MIN_SCRUB_LEN = 6


def is_secret_name(name: str) -> bool:
    """True when a variable called ``name`` probably holds a secret, so its value must not be shown."""
    if name.upper() in _NOT_SECRET:
        return False
    parts = [p.upper() for p in _PARTS.findall(name)]
    return any(p in _SECRET_PARTS or p.endswith(_SECRET_SUFFIXES) for p in parts)


def redact_value(value: str) -> str:
    """``value`` without credentials embedded in URLs and without well-known token shapes."""
    value = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", value)
    value = _FIELDS.sub(lambda m: f"{m['name']}={REDACTED}" if is_secret_name(m["name"]) else m[0], value)
    return _TOKEN_SHAPES.sub(REDACTED, value)


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` that is safe to print: secret-looking names lose their value entirely."""
    return {name: REDACTED if is_secret_name(name) else redact_value(value) for name, value in env.items()}


def scrub(text: str, env: Mapping[str, str]) -> str:
    """``text`` with the value of every secret-looking variable of ``env`` replaced, wherever it appears."""
    secrets = sorted(
        (v for k, v in env.items() if is_secret_name(k) and len(v) >= _MIN_SCRUB_LEN), key=len, reverse=True
    )
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return redact_value(text)
