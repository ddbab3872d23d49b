"""Secret handling: what counts as a secret name, and that secret values never survive redaction."""

from __future__ import annotations

import pytest

from envcheck.redact import REDACTED, is_secret_name, redact_env, redact_value, scrub


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
