"""Secret handling: what counts as a secret name, and that secret values never survive redaction."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from envcheck.core import redact
from envcheck.core.redact import REDACTED, is_secret_name, redact_env, redact_tree, redact_value, scrub


@pytest.mark.parametrize(
    "name",
    [
        "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY",
        "GITHUB_AUTHTOKEN", "DB_PASSWORD", "MYSQL_PWD", "PGPASSWORD", "apiKey", "clientSecret", "db.password",
        "SESSION_COOKIE", "GOOGLE_APPLICATION_CREDENTIALS", "SSH_PRIVATE_KEY", "SENTRY_DSN", "http-auth",
    ],
)  # fmt: skip
def test_secret_looking_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "CUDA_VISIBLE_DEVICES", "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_IB_PKEY", "PYTORCH_CUDA_ALLOC_CONF",
        "TOKENIZERS_PARALLELISM", "KEYBOARD_LAYOUT", "PWD", "OLDPWD", "SSH_AUTH_SOCK", "PATH", "HOME",
        "LD_LIBRARY_PATH", "PASSAGE_COUNT",
    ],
)  # fmt: skip
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_url_credentials_lose_user_and_password_but_keep_the_host():
    assert redact_value("https://alice:hunter2@proxy.corp:3128/") == f"https://{REDACTED}@proxy.corp:3128/"
    assert redact_value("redis://default:s3cr3t@cache:6379/0") == f"redis://{REDACTED}@cache:6379/0"
    # A URL without credentials, or an e-mail address, is left alone.
    assert redact_value("https://proxy.corp:3128/") == "https://proxy.corp:3128/"
    assert redact_value("ops@example.com") == "ops@example.com"


def test_url_password_with_a_raw_at_sign_goes_whole():
    # urllib (and so pip) splits the authority at its last "@": everything before it is the password.
    assert redact_value("https://bob:p@ss@pkgs.corp/simple") == f"https://{REDACTED}@pkgs.corp/simple"


def test_url_user_alone_is_redacted_because_it_is_often_a_token():
    # https://<token>@host is how GitHub and GitLab take personal access tokens in a URL.
    assert redact_value("https://0123abcdef4567@git.corp/x.git") == f"https://{REDACTED}@git.corp/x.git"
    # An "@" after the host (path, query, fragment) is not userinfo.
    assert redact_value("https://pkgs.corp/simple/a@b?c=d@e#f@g") == "https://pkgs.corp/simple/a@b?c=d@e#f@g"


def test_a_url_made_a_path_keeps_no_password():
    """A URL saved as a directory (``mkdir -p``, a mirror) has its ``//`` made ``/``: its userinfo still goes,
    and a path that merely holds an ``@`` stays."""
    shown = "reports/https:/alice:hunter2@pkgs.corp/doctor.json"
    assert redact_value(shown) == f"reports/https:/{REDACTED}@pkgs.corp/doctor.json"
    assert redact_value("file:/home/ada@lab/x") == "file:/home/ada@lab/x"
    assert redact_value("/srv/reports/ada@lab/doctor.json") == "/srv/reports/ada@lab/doctor.json"


def test_well_known_token_shapes_are_redacted_whatever_holds_them():
    token = "hf_" + "a1B2c3D4e5" * 4
    assert token not in redact_value(f"--token {token} --other")
    assert redact_value("ghp_" + "x" * 36) == REDACTED
    assert redact_value("AKIA" + "ABCDEFGHIJKLMNOP") == REDACTED


def test_redact_env_hides_secret_values_and_keeps_the_rest():
    env = {"HF_TOKEN": "hf_short", "CUDA_VISIBLE_DEVICES": "0,1", "HTTPS_PROXY": "http://u:p@proxy:80"}
    assert redact_env(env) == {
        "HF_TOKEN": REDACTED,
        "CUDA_VISIBLE_DEVICES": "0,1",
        "HTTPS_PROXY": f"http://{REDACTED}@proxy:80",
    }


def test_scrub_removes_secret_values_from_free_text():
    env = {"WANDB_API_KEY": "0123456789abcdef", "DEBUG": "1", "MY_TOKEN": "1"}
    text = "login failed with key 0123456789abcdef (DEBUG=1)"
    scrubbed = scrub(text, env)
    assert "0123456789abcdef" not in scrubbed and REDACTED in scrubbed
    # Short values ("1") are not scrubbed: they would mangle unrelated text.
    assert scrubbed.endswith("(DEBUG=1)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://b.s3.amazonaws.com/x?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAXX%2F2026&X-Amz-Signature=abcdef0123",
            "https://b.s3.amazonaws.com/x?X-Amz-Algorithm=AWS4&X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>",
        ),
        (
            "https://a.blob.core.windows.net/c?sv=2020&sig=abc%2Bdef&se=2026",
            "https://a.blob.core.windows.net/c?sv=2020&sig=<redacted>&se=2026",
        ),
        (
            "AccountName=foo;AccountKey=c2VjcmV0;EndpointSuffix=core",
            "AccountName=foo;AccountKey=<redacted>;EndpointSuffix=core",
        ),
        ("https://host/api?token=abc123&x=1", "https://host/api?token=<redacted>&x=1"),
        ("run: HF_TOKEN=abcdefgh python train.py", "run: HF_TOKEN=<redacted> python train.py"),
        # Fields whose names only look alike stay: they are what a reader needs.
        ("TOKENIZERS_PARALLELISM=false signal=9 CUDA_VISIBLE_DEVICES=0,1",) * 2,
    ],
)
def test_secret_fields_in_free_text(text, expected):
    assert redact_value(text) == expected


@pytest.mark.parametrize("name", ["GITHUB_PAT", "AZURE_STORAGE_CONNECTION_STRING"])
def test_more_secret_names(name):
    assert is_secret_name(name)


# -- each mechanism alone ----------------------------------------------------------------------------
# Four mechanisms redact: the values of secret-named variables (scrub), URL userinfo, secret-named
# name=value fields, and token shapes. Each test below feeds one of them inputs that none of the others
# can catch (checked by `caught_by`), so a mechanism that is broken or swapped for another fails its test.


def _alphanumeric(n: int, offset: int = 0) -> str:
    """``n`` characters in the mix of a real token (upper, lower, digits), deterministic."""
    alphabet = "aB3dE5gH7jK9mN1pQ2sT4vW6yZ8cF0hL"
    return "".join(alphabet[(offset + 7 * i) % len(alphabet)] for i in range(n))


#: Tokens at their real lengths, from each issuer's documented format.
TOKENS = {
    "hugging face": "hf_" + _alphanumeric(34),
    "github classic": "ghp_" + _alphanumeric(36),
    "github oauth": "gho_" + _alphanumeric(36, 3),
    "github fine-grained": "github_pat_" + _alphanumeric(22) + "_" + _alphanumeric(59, 5),
    "gitlab": "glpat-" + _alphanumeric(20),
    "aws access key id": "AKIA" + "QX7RZK2M4PLD9WNB",
    "openai": "sk-" + _alphanumeric(48),
    "openai project": "sk-proj-" + _alphanumeric(40) + "-" + _alphanumeric(40, 2) + "_" + _alphanumeric(74, 4),
    "slack bot": "xoxb-" + "123456789012-1234567890123-" + _alphanumeric(24),
}


def test_tokens_have_their_real_lengths():
    assert len(TOKENS["hugging face"]) == 3 + 34
    assert len(TOKENS["github classic"]) == 4 + 36
    assert len(TOKENS["github fine-grained"]) == 11 + 82
    assert len(TOKENS["aws access key id"]) == 20
    assert len(TOKENS["openai"]) == 3 + 48


def caught_by(text: str, env: dict[str, str]) -> set[str]:
    """Which mechanisms would change ``text``, each judged on its own."""
    caught = set()
    if any(is_secret_name(k) and len(v) >= 6 and v in text for k, v in env.items()):
        caught.add("env")
    if redact._URL_CREDENTIALS.search(text):
        caught.add("url")
    fields = [*redact._FIELDS.finditer(text), *redact._QUOTED_KEYS.finditer(text)]
    if any(is_secret_name(m["name"]) for m in fields):
        caught.add("fields")
    if redact._TOKEN_SHAPES.search(text):
        caught.add("shapes")
    return caught


ENV_SECRET = "q7Zp2mXv9LkR"  # a value with no shape anyone could recognise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"login failed for {ENV_SECRET} at step 3", "login failed for <redacted> at step 3"),
        (f"bad key ({ENV_SECRET}), retrying", "bad key (<redacted>), retrying"),
        (f"KeyError: '{ENV_SECRET}'", "KeyError: '<redacted>'"),
    ],
)
def test_env_values_alone(text, expected):
    env = {"WANDB_API_KEY": ENV_SECRET}
    assert caught_by(text, env) == {"env"}
    assert scrub(text, env) == expected
    # The same value under an ordinary name is nobody's secret.
    assert scrub(text, {"RUN_NAME": ENV_SECRET}) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "could not fetch https://deploy:Zx81qq@pkgs.corp/simple/ (403), giving up",
            "could not fetch https://<redacted>@pkgs.corp/simple/ (403), giving up",
        ),
        ('remote "git+https://oauth2:Qm7rT2@git.corp/a.git",', 'remote "git+https://<redacted>@git.corp/a.git",'),
    ],
)
def test_url_userinfo_alone(text, expected):
    assert caught_by(text, {}) == {"url"}
    assert redact_value(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(token=abcdef123456),", "(token=<redacted>),"),
        ("retrying with password=Zx81qqWm (attempt 2).", "retrying with password=<redacted> (attempt 2)."),
        ("[client_secret=Zx81qqWm], next", "[client_secret=<redacted>], next"),
        ("see ?sig=Zx81qqWm.", "see ?sig=<redacted>."),
        ("Client(api_key='Zx8 1qq\\'Wm', retries=3)", "Client(api_key='<redacted>', retries=3)"),
        ('env HF_TOKEN="Zx8 1qq" python train.py', 'env HF_TOKEN="<redacted>" python train.py'),
        ('{"password": "Zx8 1qq", "user": "ada"}', '{"password": "<redacted>", "user": "ada"}'),
        ("{'db.password': 'Zx8 1qq'}", "{'db.password': '<redacted>'}"),
        ('token="unterminated rest', 'token="<redacted> rest'),
    ],
)
def test_name_value_fields_alone(text, expected):
    assert caught_by(text, {}) == {"fields"}
    assert redact_value(text) == expected


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_token_shapes_alone(kind):
    token = TOKENS[kind]
    text = f"push rejected ({token}), retry; [{token}]. {token}"
    assert caught_by(text, {}) == {"shapes"}
    assert redact_value(text) == "push rejected (<redacted>), retry; [<redacted>]. <redacted>"


@pytest.mark.parametrize("sgr", ["\x1b[0m", "\x1b[m", "\x1b[1;32m", "\x1b[38;5;208m"])
def test_a_token_or_field_right_after_a_colour_code_is_redacted(sgr):
    # A coloured log line: the code's final "m" glues the token to a word for a plain \b.
    token = TOKENS["aws access key id"]
    assert redact_value(f"{sgr}{token}{sgr} {sgr}password=Zx81qqWm") == f"{sgr}{REDACTED}{sgr} {sgr}password={REDACTED}"


@pytest.mark.parametrize(
    "text", ["hf_hub_download", "pip install scikit-learn sk-learn", "ghp_short", "AKIA1234", "xoxb-1", "task-ab"]
)
def test_things_shaped_almost_like_tokens_stay(text):
    assert redact_value(text) == text


def test_redaction_is_idempotent():
    text = f"https://u:p@h/?token=abc&x=1 (password='a b'), {TOKENS['openai']}."
    once = redact_value(text)
    assert redact_value(once) == once and scrub(once, {"HF_TOKEN": "zzzzzzzz"}) == once


# -- the structured report ---------------------------------------------------------------------------


def test_redact_tree_scrubs_every_string_keys_included_and_returns_a_new_structure():
    env = {"WANDB_API_KEY": ENV_SECRET}
    doc = {
        "schema": "envcheck.doctor/1",
        "count": 3,
        "ok": True,
        "missing": None,
        "ratio": 0.5,
        f"key {ENV_SECRET}": "x",
        "results": [{"summary": f"failed: {ENV_SECRET}", "details": [f"proxy https://u:pw@proxy:80 ({ENV_SECRET})"]}],
        "version": (2, 30, f"{ENV_SECRET}"),
    }
    before = json.dumps(doc)
    out = redact_tree(doc, env)
    assert out == {
        "schema": "envcheck.doctor/1",
        "count": 3,
        "ok": True,
        "missing": None,
        "ratio": 0.5,
        "key <redacted>": "x",
        "results": [{"summary": "failed: <redacted>", "details": ["proxy https://<redacted>@proxy:80 (<redacted>)"]}],
        "version": (2, 30, "<redacted>"),
    }
    assert json.dumps(doc) == before  # the input is untouched


#: Secret values that a renderer would escape: quotes, backslashes, non-ASCII, newlines.
AWKWARD_SECRETS = {
    "quote": "pa\"ss'word-91",
    "backslash": "C:\\keys\\vault-7731",
    "non-ascii": "päss-wörd-ñ-密码",
    "newline": "first-line-93\nsecond-line-27\n",
    "tab": "col-one\tcol-two-88",
}


def escaped_forms(secret: str) -> set[str]:
    """How ``secret`` (and each of its lines) could appear in rendered output."""
    forms = set()
    for text in {secret, *(line for line in secret.splitlines() if line.strip())}:
        forms |= {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}
    return forms


@pytest.mark.parametrize("kind", sorted(AWKWARD_SECRETS))
def test_secrets_that_a_renderer_would_escape_are_gone_before_it_runs(kind):
    secret = AWKWARD_SECRETS[kind]
    env = {"HF_TOKEN": secret, "PATH": "/usr/bin"}
    doc = {
        "summary": f"login failed with {secret} (401),",
        "error": f"ValueError: bad token {secret!r}",
        "child_output": json.dumps({"token_was": secret}),  # a child's JSON, quoted again as text
        "details": f"Traceback:\n  value = {secret}\nEnd".splitlines(),
        secret: "as a key",
    }
    clean = redact_tree(doc, env)
    # Neither in the report's strings, as a reader of any renderer sees them, nor in the escaped text.
    texts = [*clean, *(v for v in clean.values() if isinstance(v, str)), *clean["details"]]
    rendered = [json.dumps(clean), json.dumps(clean, ensure_ascii=False)]
    for form in escaped_forms(secret):
        assert not any(form in text for text in texts + rendered), (kind, form)
    assert json.loads(json.dumps(clean))["summary"] == "login failed with <redacted> (401),"


# -- linear time -------------------------------------------------------------------------------------
# The credentials-in-URL pattern used to try a scheme at every letter of a run and read the rest of the run
# each time: a 1 MiB host name took minutes. Each shape below made a pattern read its input more than once.

MiB = 1 << 20

#: name -> a hostile string of about ``n`` characters
HOSTILE: dict[str, Any] = {
    "letters": lambda n: "a" * n,
    "digits and letters": lambda n: "1a" * (n // 2),
    "a: runs": lambda n: "a:" * (n // 2),
    "@ after a scheme": lambda n: "a://" + "@" * n,
    "// runs": lambda n: "a://" * (n // 4),
    "scheme then letters": lambda n: "git+https://" + "b" * n,
    "token prefix then letters": lambda n: "hf_" + "a" * n + "é",
    "token prefixes": lambda n: "sk-hf_xoxb-" * (n // 11) + "é",
    "unterminated quote": lambda n: 'token="' + "x\\'" * (n // 3),
    "field name without value": lambda n: "a" * n + "=",
    "quoted key without colon": lambda n: '"a"' + " " * n,
}


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_a_mebibyte_of_hostile_text_is_redacted_in_well_under_a_second(shape):
    # A bound, not a benchmark (benchmarks/redact_cost.py measures): 20 s for what takes 0.1 to 0.7 s (a
    # loaded host with the suite's other worker beside it took over 5 s once). The small size first, so that
    # a quadratic pattern fails here in seconds instead of running for an hour.
    env = {"HF_TOKEN": ENV_SECRET}
    for size in (64 * 1024, MiB):
        text = HOSTILE[shape](size)
        started = time.perf_counter()
        scrub(text, env)
        redact_tree({"host": text, "results": [text]}, env)
        elapsed = time.perf_counter() - started
        assert elapsed < 20.0, (shape, size, elapsed)


NVML_SITE = Path(__file__).parent.parent / "nvml_site"
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))


def envcheck(*args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    """The installed command, on the fake NVML's healthy GPUs, with ``extra`` in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env.update({"PYTHONPATH": str(NVML_SITE), "ENVCHECK_FAKE_NVML": "healthy_multi_gpu", **extra})
    return subprocess.run([ENVCHECK, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd="/")


def test_fleet_over_a_report_with_a_mebibyte_host_name_finishes_quickly(tmp_path):
    doc = json.loads(envcheck("doctor", "--quick", "--json").stdout)
    (tmp_path / "a.json").write_text(json.dumps(doc))
    doc["host"]["hostname"] = "a" * MiB
    (tmp_path / "b.json").write_text(json.dumps(doc))
    for fmt in ("text", "json"):
        started = time.monotonic()
        proc = envcheck("fleet", "--format", fmt, str(tmp_path), timeout=60)
        assert proc.returncode in (0, 1), proc.stderr
        assert time.monotonic() - started < 20, fmt  # 0.2 s here; past 45 s before


def test_doctor_env_with_huge_gpu_variables_keeps_its_deadline_and_blames_nothing():
    huge = "a" * 120_000
    started = time.monotonic()
    proc = envcheck(
        "doctor", "env", "--deadline", "10", "--json",
        NCCL_SOCKET_IFNAME=huge, CUDA_MODULE_LOADING=huge, PYTORCH_CUDA_ALLOC_CONF=huge, timeout=60,
    )  # fmt: skip
    wall = time.monotonic() - started
    doc = json.loads(proc.stdout)
    assert wall < 10 and doc["duration_s"] < 10, (wall, doc["duration_s"])  # 88 s and 32 s before
    assert not [c for c in doc["checks"] if c["status"] == "crash" or "hung" in c["summary"]]


# -- everywhere: every output of the installed command -----------------------------------------------
# A secret of the environment (a value with no recognisable shape), a token of a known shape and a URL's
# password, each put where the command will print it; none may survive in any output, stdout, stderr or file.

SECRET_ENV = {
    "HF_TOKEN": ENV_SECRET,
    "NCCL_DEBUG_FILE": f"/scratch/{ENV_SECRET}/nccl.%h.log",  # a GPU variable the doctor shows
    "NVIDIA_MIRROR": "https://deploy:Zx81qqPassWord@pkgs.corp/simple",
    "TORCH_HOME": "/data/" + TOKENS["hugging face"],
}
LEAKS = (ENV_SECRET, "Zx81qqPassWord", TOKENS["hugging face"])


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in LEAKS:
            assert secret not in text, (secret, text[:2000])


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html", "prometheus"])
def test_no_secret_survives_in_any_format_on_stdout_or_in_the_output_file(fmt, tmp_path):
    out = tmp_path / "report"
    proc = envcheck("doctor", "env", "-v", "--format", fmt, "-o", str(out), **SECRET_ENV)
    assert proc.returncode in (0, 1), proc.stderr
    assert_no_secret(proc.stdout, proc.stderr, out.read_text())
    if fmt in ("text", "json", "markdown", "html"):  # the report shows the variables: the secrets reached it
        assert REDACTED in proc.stdout or "&lt;redacted&gt;" in proc.stdout


def test_the_save_file_and_every_format_written_by_deliver_are_redacted(tmp_path, monkeypatch, capsys):
    from envcheck.cli.terminal import deliver

    doc = json.loads(envcheck("doctor", "--quick", "--json").stdout)
    doc["checks"][0]["summary"] = f"login as {ENV_SECRET} via https://u:Zx81qqPassWord@h/ {TOKENS['hugging face']}"
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    for fmt in ("json", "markdown", "html", "prometheus", "text"):
        out, save = tmp_path / f"out.{fmt}", tmp_path / f"save.{fmt}.json"
        assert deliver(doc, stdout_format=fmt, file_format=fmt, output=str(out), verbose=True, save=str(save)) is None
        assert_no_secret(out.read_text(), save.read_text(), *capsys.readouterr())
        assert REDACTED in save.read_text()


@pytest.mark.parametrize("dialect", [[], ["--npd"], ["--slurm"]], ids=["docker", "npd", "slurm"])
def test_no_secret_in_any_healthcheck_dialect_or_its_file(dialect, tmp_path):
    # The spec's path is in each dialect's line ("lab spec PATH met"), and in the error of a spec that cannot
    # be read; the .prom and .json files are written beside the line. A short directory: NPD keeps 80 bytes.
    secret_dir = Path(tempfile.mkdtemp(prefix=ENV_SECRET, dir="/tmp"))
    try:
        spec = secret_dir / "lab.toml"
        assert envcheck("snapshot", "-o", str(spec)).returncode == 0
        missing = tmp_path / TOKENS["hugging face"] / "lab.toml"
        for spec_path in (spec, missing, "https://u:Zx81qqPassWord@h/lab.toml"):
            for output in ("health.prom", "health.json"):
                args = ["healthcheck", *dialect, "--spec", str(spec_path), "-o", str(tmp_path / output)]
                proc = envcheck(*args, **SECRET_ENV)
                assert proc.stdout.count("\n") == 1, proc.stdout
                assert_no_secret(proc.stdout, proc.stderr, (tmp_path / output).read_text())
            if spec_path == spec or dialect != ["--npd"]:  # NPD's 80 bytes may end before a long path
                assert REDACTED in proc.stdout, proc.stdout
    finally:
        shutil.rmtree(secret_dir)


@pytest.mark.parametrize(
    "args",
    [
        ["doctor", "--quick", "--spec", f"/nonexistent/{ENV_SECRET}/lab.toml"],  # the doctor's own error line
        ["doctor", "--quick", "--json", "-o", f"/nonexistent/{ENV_SECRET}/x.json"],  # deliver's write error
        ["doctor", "--format", f"json{ENV_SECRET}"],  # click's usage error quotes the value
        ["doctor", f"--{TOKENS['hugging face']}"],  # ... and the option
        ["healthcheck", "-o", f"/tmp/{ENV_SECRET}.txt"],  # the healthcheck's usage line, on stdout
        ["healthcheck", "--npd", "-o", f"/tmp/{ENV_SECRET}.txt"],
        ["fleet", f"/nonexistent/{ENV_SECRET}.json", "https://u:Zx81qqPassWord@h/r.json"],  # skipped sources
        ["snapshot", "-o", f"/nonexistent/{ENV_SECRET}/lab.toml"],
    ],
)
@pytest.mark.parametrize("locale", [{}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}])
def test_no_secret_in_error_and_usage_lines(args, locale):
    # stderr is scrubbed where it is written, so a line no report holds cannot carry a secret either; under
    # an ASCII locale too, where click writes through a stream of its own.
    proc = envcheck(*args, **SECRET_ENV, **locale)
    assert proc.returncode != 0
    assert_no_secret(proc.stdout, proc.stderr)
    assert REDACTED in proc.stdout + proc.stderr


# -- properties ----------------------------------------------------------------------------------------

#: Any character at all: surrogates (a host name decoded with surrogateescape) and control characters too.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)
#: What may stand next to a token in prose, a log line or a command line.
SEPARATORS = st.sampled_from(
    [" ", "\n", "\t", ",", ";", "(", ")", "[", "]", "'", '"', ": ", "\x1b[0m", "\x1b[1;31m", "="]
)
#: Pieces that, repeated, made the old patterns (or could make a new one) read their input more than once.
HOSTILE_PIECES = st.sampled_from(
    ["a", "Z", "1", ":", "@", "/", "//", "://", "-", "_", ".", "+", "=", '"', "'", "\\", " ", "hf_", "sk-",
     "ghp_", "xoxb-", "AKIA", "token", "https", "é", "\n", "?", "#", "&", ";"]
)  # fmt: skip


@st.composite
def embedded_secret(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    """(text, the secret in it, the environment): a known env secret anywhere in any text, or a token of a
    known shape or a URL with credentials set off as in prose."""
    before, after = draw(ANY_TEXT), draw(ANY_TEXT)
    kind = draw(st.sampled_from(["env", "token", "url"]))
    if kind == "env":
        secret = draw(st.text(st.characters(categories=("L", "N", "P", "S")), min_size=8, max_size=40))
        assume(REDACTED not in secret and secret not in REDACTED)
        return before + secret + after, secret, {"MY_API_KEY": secret, "PATH": "/usr/bin"}
    if kind == "token":
        secret = TOKENS[draw(st.sampled_from(sorted(TOKENS)))]
    else:
        secret = "Zx81qq" + draw(st.text(st.characters(categories=("L", "N")), max_size=20))
    inner = (
        secret if kind == "token" else f"{draw(st.sampled_from(['https', 'git+ssh', 'redis']))}://ada:{secret}@host/"
    )
    text = before + draw(SEPARATORS) + inner + draw(SEPARATORS) + after
    return text, secret, {}


@settings(max_examples=300, deadline=None)
@given(embedded_secret())
def test_property_no_embedded_secret_survives(case):
    text, secret, env = case
    assert secret not in scrub(text, env)
    assert secret not in json.dumps(redact_tree({text: [text]}, env), ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=4))
def test_property_the_redactor_never_raises_and_is_idempotent(text, env):
    once = scrub(text, env)
    assert isinstance(once, str) and isinstance(redact_value(text), str)
    assert scrub(once, env) == once
    redact_env(env)
    redact_tree({"k": [text, (text, 1.5, None)], text: {"n": text}}, env)


@settings(max_examples=12, deadline=None)
@given(st.lists(HOSTILE_PIECES, min_size=1, max_size=6).map("".join), st.lists(HOSTILE_PIECES, max_size=3).map("".join))
def test_property_time_per_byte_is_bounded_on_long_hostile_text(unit, tail):
    # ~256 KiB of one repeated hostile unit: well under a second here; a quadratic pattern takes minutes.
    text = unit * (256 * 1024 // len(unit)) + tail
    started = time.perf_counter()
    scrub(text, {"HF_TOKEN": ENV_SECRET})
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5 + 20.0 * len(text) / 1e6, (unit, tail, elapsed)  # 20 s per MB: a loaded host's margin


# -- every claim, one at a time --------------------------------------------------------------------------
# The module claims word parts, glued suffixes, well-known exceptions and token shapes. Each is listed here by
# hand from the module's docstring and comments (not read from its sets), so dropping one from the code fails
# exactly one case below.

#: Each word part the module names as secret, in a name where it stands alone as a part.
CLAIMED_PARTS = [
    "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASS", "PASSPHRASE", "PWD", "KEY",
    "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "PRIVATE", "SESSION", "COOKIE", "COOKIES",
    "SIGNATURE", "SIG", "DSN", "PAT", "CONNECTION",
]  # fmt: skip


@pytest.mark.parametrize("part", CLAIMED_PARTS)
def test_each_claimed_word_part_makes_a_name_secret_in_every_spelling(part):
    assert is_secret_name(f"APP_{part}")
    assert is_secret_name(f"app-{part.lower()}")
    assert is_secret_name(f"app{part.capitalize()}")  # camelCase splits into parts too
    # The part glued inside a longer word is not the part: NOTAPART stays visible.
    assert not is_secret_name(f"APP_X{part}Y")


#: Each glued suffix the module names (``AUTHTOKEN``, ``CLIENTSECRET``): a part that ends with it.
CLAIMED_SUFFIXES = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY", "ACCESSKEY", "SECRETKEY", "PRIVATEKEY"]


@pytest.mark.parametrize("suffix", CLAIMED_SUFFIXES)
def test_each_claimed_glued_suffix_makes_a_name_secret(suffix):
    # "ZZ" + suffix is one part that is not itself a claimed part: only the suffix rule can catch it.
    assert is_secret_name(f"MY_ZZ{suffix}")
    assert redact_env({f"MY_ZZ{suffix}": "value-123456"}) == {f"MY_ZZ{suffix}": REDACTED}


@pytest.mark.parametrize("name", ["PWD", "OLDPWD", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "XAUTHORITY"])
def test_each_claimed_exception_stays_visible_in_any_case(name):
    assert not is_secret_name(name)
    assert not is_secret_name(name.lower())
    assert redact_env({name: "/home/ada"}) == {name: "/home/ada"}


@pytest.mark.parametrize(
    "token",
    [
        # Hugging Face, GitHub's five prefixes (personal, OAuth, user-to-server, server-to-server, refresh) and
        # fine-grained PATs, GitLab, OpenAI-style, Slack's five, AWS access key ids: each at its minimum length.
        "hf_" + "a" * 20, "ghp_" + "a" * 20, "gho_" + "a" * 20, "ghu_" + "a" * 20, "ghs_" + "a" * 20,
        "ghr_" + "a" * 20, "github_pat_" + "a" * 20, "glpat-" + "a" * 20, "sk-" + "a" * 20, "xoxa-" + "1" * 10,
        "xoxb-" + "1" * 10, "xoxp-" + "1" * 10, "xoxr-" + "1" * 10, "xoxs-" + "1" * 10, "AKIA" + "A1" * 8,
    ],
)  # fmt: skip
def test_each_claimed_token_shape_at_its_minimum_length_and_not_one_shorter(token):
    assert redact_value(f"use {token} now") == f"use {REDACTED} now"
    short = token[:-1]
    assert redact_value(f"use {short} now") == f"use {short} now"


@pytest.mark.parametrize(("name", "secret"), [("HF_TOKEN", True), ("RUN_NAME", False)])
def test_scrub_minimum_length_is_six_characters(name, secret):
    # Values of five characters are left in free text (they would mangle it); six are taken out.
    env = {name: "abcdef", "OTHER_TOKEN": "abcde"}
    said = scrub("x abcdef y abcde z", env)
    assert said == ("x <redacted> y abcde z" if secret else "x abcdef y abcde z")


@pytest.mark.parametrize("kind", sorted(AWKWARD_SECRETS) + ["quote and non-ascii"])
def test_each_escaped_form_of_a_secret_is_scrubbed_under_a_name_that_is_not_secret(kind):
    # A child's JSON or a repr quoting the secret under an ordinary key ("msg"): only the escaped forms of the
    # environment's value can catch it (no field name, no token shape). The non-secret PATH comes first.
    secret = AWKWARD_SECRETS.get(kind, 'wört"geheim-1')
    env = {"PATH": "/usr/bin", "HF_TOKEN": secret}
    for ascii_only in (True, False):
        text = json.dumps({"msg": f"bad {secret}!"}, ensure_ascii=ascii_only)
        assert scrub(text, env) == json.dumps({"msg": f"bad {REDACTED}!"}), (ascii_only, text)
    said = scrub(repr(f"bad {secret}!"), env)
    assert said[1:-1] == f"bad {REDACTED}!", said


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('token="" next', 'token="" next'),  # an empty value hides nothing: left as written
        ("password='' next", "password='' next"),
        ('password="x" next', 'password="<redacted>" next'),  # one character is still the secret
        ("password='x', next", "password='<redacted>', next"),
        ('{"password": "x"}', '{"password": "<redacted>"}'),
        ("f(token=).", "f(token=)."),  # nothing but punctuation: no value to take
        ("password=Xylophone1 next", "password=<redacted> next"),  # no first letter is kept, whatever it is
        ("password=XX", "password=<redacted>"),
    ],
)
def test_short_and_empty_field_values(text, expected):
    assert redact_value(text) == expected


#: Text built from the pieces the patterns look for (token prefixes, separators, quotes, URL parts) and
#: filler, so that a generated text often holds a secret or nearly does.
_PIECES = st.sampled_from(
    ["hf_", "ghp_", "github_pat_", "glpat-", "sk-", "xoxb-", "AKIA", "https://", "u:p@", "@", "=", ":", '"', "'",
     "token", "KEY", "A" * 20, "abc123" * 4, " ", "\x1b[0m", "node-01", "/", "?", "&", ";", '"api_key": "',
     "'password': '", "X-Amz-Signature=", "https://user:secret@host/"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=4), max_size=12).map("".join))
def test_the_prefilter_never_lets_a_secret_through(text: str) -> None:
    """redact_value skips texts where no pattern can match (most strings of a report); whatever it skips,
    every pattern applied in full gives the same text: the prefilter only saves time."""
    assert redact_value(text) == redact._substitute(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_PIECES | st.text(max_size=4), max_size=6).map("".join), max_size=700))
def test_a_list_scrubbed_at_once_is_each_text_scrubbed(texts: list[str]) -> None:
    """remembered.all passes whole slices of new texts at one search of the prefilter (a fleet's 80 000
    GPU UUIDs): a secret anywhere in a slice still reaches the patterns, and every text comes back as
    redact_value alone makes it, seen before or not."""
    clean = redact.remembered(redact.redact_value)
    assert clean.all(texts) == [redact_value(t) for t in texts]
    assert clean.all(texts[::-1]) == [redact_value(t) for t in texts[::-1]]


def test_a_secret_among_many_clean_texts_is_scrubbed() -> None:
    uuids = [f"GPU-{i:08x}-0000-1111-2222-333344445555" for i in range(1000)]
    texts = uuids[:600] + ["hf_" + "a" * 30] + uuids[600:]
    out = redact.remembered(redact.redact_value).all(texts)
    assert out[600] == "<redacted>" and out[:600] == uuids[:600] and out[601:] == uuids[600:]


def test_a_tree_scrubs_each_distinct_string_once_and_keeps_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet's report repeats its strings ten thousand times: each distinct one is scrubbed once, and
    the copy is the same tree with numbers untouched."""
    seen: list[str] = []
    real = redact.redact_value

    def counting(text: str) -> str:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(redact, "redact_value", counting)
    fix = "export HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz"
    tree = {"nodes": [{"hostname": f"n{i}", "fix": fix, "values": [1, 2.5, True, None]} for i in range(50)]}
    out = redact_tree(tree, {})
    assert sorted(seen) == sorted({"nodes", "hostname", "fix", "values", fix, *(f"n{i}" for i in range(50))})
    assert out["nodes"][7] == {"hostname": "n7", "fix": f"export HF_TOKEN={REDACTED}", "values": [1, 2.5, True, None]}


@pytest.mark.parametrize("fmt", ["json", "text", "markdown", "html"])
def test_fleet_redacts_its_bulk_where_it_is_built(tmp_path: Path, fmt: str) -> None:
    """The fleet redacts its nodes, problems, comparisons and figures as it builds them, and delivery
    does not walk them again (envcheck.fleet.report): node reports whose host name is an environment
    secret and whose checks, fixes, sources, device names and models carry a token and URL credentials
    come out redacted in every part and format; so do the reports' paths, which lie under a URL made a path
    (``https:/user:password@host/``: a mirror's directories)."""
    token, url = TOKENS["hugging face"], "https://deploy:Zx81qqPassWord@pkgs.corp/simple"
    reports = tmp_path / "https:" / "deploy:Zx81qqPassWord@pkgs.corp" / f"r-{ENV_SECRET}"
    reports.mkdir(parents=True)
    for i, host in enumerate((ENV_SECRET, "n2", "n3")):
        doctor = {
            "schema": "envcheck.doctor/1",
            "status": "fail",
            "exit_code": 1,
            "host": {"hostname": host, "python": "3.11.7"},
            "gpus": [{"uuid": f"GPU-{token}-{i}", "name": f"H100 {token}"}],
            "checks": [
                {
                    "id": "gpu.ecc",
                    "status": "fail",
                    "summary": f"ECC errors; see {url}",
                    "fix": {"text": f"export HF_TOKEN={token}", "command": f"pip install --index-url {url} x"},
                }
            ],
        }
        result = {"id": "matmul.bf16", "case": "c", "unit": "TFLOP/s", "status": "ok", "verified": True}
        bench = {
            "schema": "envcheck.bench/1",
            "status": "ok",
            "exit_code": 0,
            "host": {"hostname": host},
            "devices": [
                {"name": f"cuda:{token}", "kind": "cuda", "model": f"H100 {token}", "uuid": f"GPU-{token}-{i}"}
            ],
            "results": [{**result, "device": f"cuda:{token}", "value": 100.0 if i else 50.0}],
        }
        (reports / f"{host}-doctor.json").write_text(json.dumps(doctor))
        (reports / f"{host}-bench.json").write_text(json.dumps(bench))
    proc = envcheck("fleet", "--format", fmt, str(reports), **SECRET_ENV)
    assert proc.returncode == 1, proc.stderr
    assert_no_secret(proc.stdout, proc.stderr)
    assert REDACTED in proc.stdout.replace("&lt;", "<").replace("&gt;", ">")
    if fmt == "json":
        doc = json.loads(proc.stdout)
        for part in ("nodes", "problems", "comparisons", "figures"):
            assert REDACTED in json.dumps(doc[part]), part
