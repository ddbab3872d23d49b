"""The Kubernetes examples and the node-problem-detector mode. No Kubernetes runs here: the manifests
are checked statically (they parse, images are pinned, pods run as non-root with nothing to escalate,
resources are requested, every envcheck command in them parses with envcheck's own click commands),
and the commands they run are run for real through the installed command over the fake NVML."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from envcheck import __version__
from envcheck.cli import main
from envcheck.doctor.health import NPD_MAX_OUTPUT, fit_bytes
from tests.cli.test_terminal import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))
NPD_CONFIG = EXAMPLES / "npd-envcheck-plugin.json"


def documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def by_kind(kind: str) -> dict:
    [doc] = [d for _, d in documents() if d["kind"] == kind]
    return doc


def containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def envcheck_commands(doc: dict) -> list[list[str]]:
    """Every ``envcheck ...`` invocation in the containers' shell scripts, as argv (up to a shell operator)."""
    found = []
    for container in containers(doc):
        for line in "\n".join(container.get("command", []) + container.get("args", [])).splitlines():
            if re.match(r"\s*envcheck\s", line):
                words = shlex.split(line)
                stop = next((i for i, w in enumerate(words) if w in ("||", "&&", ";", "|", "&")), len(words))
                found.append(words[1:stop])
    return found


def parse(argv: list[str]) -> click.Context:
    """Parse an envcheck invocation with envcheck's own click commands: an option that does not exist
    or a value it refuses raises here (the healthcheck keeps its usage error in ctx.meta: raise it)."""
    parent = click.Context(main, info_name="envcheck")
    command = main.get_command(parent, argv[0])  # the command group loads its commands lazily
    assert command is not None, argv[0]
    ctx = command.make_context(argv[0], argv[1:], parent=parent)
    assert "envcheck_usage_error" not in ctx.meta, ctx.meta.get("envcheck_usage_error")
    return ctx


def test_every_manifest_parses_and_the_examples_are_there():
    assert {p.name for p in MANIFESTS} == {"daemonset-textfile.yaml", "job-onboarding.yaml"}
    kinds = {(d["apiVersion"], d["kind"]) for _, d in documents()}
    assert kinds == {("apps/v1", "DaemonSet"), ("batch/v1", "Job")}


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_images_are_pinned_to_envcheck_s_version(name, doc):
    for container in containers(doc):
        image = container["image"]
        repository, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (repository and tag not in ("", "latest")), (name, image)
        # the image built from this repository's Dockerfile, tagged with this envcheck's version
        assert tag == __version__, (name, image)


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_pods_run_as_non_root_with_nothing_to_escalate(name, doc):
    spec = pod_spec(doc)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True
    assert spec["automountServiceAccountToken"] is False  # envcheck never talks to the API server
    for container in containers(doc):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx.get("privileged") is not True
        assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add")
        assert ctx["readOnlyRootFilesystem"] is True
        # what must be written is a volume
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_resources_are_requested(name, doc):
    for container in containers(doc):
        requests = container["resources"]["requests"]
        assert "cpu" in requests and "memory" in requests, name
        assert "memory" in container["resources"]["limits"], name


def test_the_onboarding_job_takes_all_eight_gpus():
    job = by_kind("Job")
    [container] = containers(job)
    resources = container["resources"]
    # extended resources are given in limits; a request, where given, must equal the limit
    assert resources["limits"]["nvidia.com/gpu"] == 8
    assert resources["requests"].get("nvidia.com/gpu", 8) == 8
    assert pod_spec(job)["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert {"medium": "Memory"}.items() <= next(v for v in pod_spec(job)["volumes"] if v["name"] == "shm")[
        "emptyDir"
    ].items()
    commands = envcheck_commands(job)
    assert [argv[0] for argv in commands] == ["doctor", "bench", "comm"]
    for argv in commands:
        ctx = parse(argv)
        assert ctx.params["output"].endswith(f"{argv[0]}.json")  # JSON reports, by suffix


def test_the_daemonset_reads_every_gpu_without_taking_any():
    daemonset = by_kind("DaemonSet")
    spec = pod_spec(daemonset)
    [container] = containers(daemonset)
    # a request for nvidia.com/gpu would take GPUs away from the workloads on the node
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    env = {e["name"]: e for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"  # the Hostname label
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    textfile = next(v for v in spec["volumes"] if v["name"] == "textfile")["hostPath"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "textfile")["mountPath"]
    [argv] = envcheck_commands(daemonset)
    ctx = parse(argv)
    assert argv[0] == "healthcheck" and ctx.params["output"] == f"{mount}/envcheck.prom"
    assert textfile["type"] == "Directory" and textfile["path"].startswith("/var/lib/node_exporter")
    assert ctx.params["deadline"] < int(env["INTERVAL_S"]["value"])


def test_the_daemonset_s_command_writes_a_textfile_prometheus_parses(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    [argv] = envcheck_commands(by_kind("DaemonSet"))
    argv = [str(tmp_path / "envcheck.prom") if a == "/textfile/envcheck.prom" else a for a in argv]
    proc = run(*argv, ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap", NODE_NAME="gpu-node-01")
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy: gpu.ecc:")
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "envcheck.prom").read_text())}
    status = families["envcheck_check_status"].samples
    assert any(s.labels["check"] == "gpu.ecc" and s.labels["status"] == "fail" and s.value == 1 for s in status)
    assert {s.labels["Hostname"] for s in families["envcheck_gpu_up"].samples} == {"gpu-node-01"}


# -- node-problem-detector ---------------------------------------------------------------------------------


def npd_config() -> dict:
    return json.loads(NPD_CONFIG.read_text())


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()
    return int(value) * (60 if unit == "m" else 1)


def test_the_npd_config_passes_npd_s_own_validation_and_calls_the_real_mode():
    """What NPD checks when it loads a custom plugin config (pkg/custompluginmonitor/types/config.go):
    the plugin is ``custom``, no rule's timeout exceeds the global one, and every permanent rule's
    condition has a default; and the rule runs envcheck's --npd mode with options envcheck has."""
    config = npd_config()
    assert config["plugin"] == "custom"
    plugin = config["pluginConfig"]
    assert plugin["max_output_length"] == NPD_MAX_OUTPUT
    defaults = {c["type"] for c in config["conditions"]}
    [rule] = config["rules"]
    assert rule["type"] == "permanent" and rule["condition"] in defaults
    assert seconds(rule["timeout"]) <= seconds(plugin["timeout"]) < seconds(plugin["invoke_interval"])
    assert Path(rule["path"]).name == "envcheck" and Path(rule["path"]).is_absolute()
    ctx = parse(rule["args"])
    assert rule["args"][0] == "healthcheck" and ctx.params["npd"] is True
    # envcheck answers before NPD's timeout, so NPD never records a timeout instead of the verdict
    assert ctx.params["deadline"] + 10 <= seconds(rule["timeout"])


@pytest.mark.parametrize(
    ("scenario", "extra", "code", "starts"),
    [
        ("healthy_multi_gpu", {}, 0, "healthy: 4 GPU(s) answer"),
        ("ecc_uncorrected_row_remap", {}, 1, "gpu.ecc: GPU 1 (00000000:19:00.0): 3 uncorrected"),
        ("no_library", {}, 1, "gpu.required: no NVIDIA GPU answers"),
        ("healthy_multi_gpu", {"ENVCHECK_FAKE_CRASH": "1"}, 2, "unknown: envcheck crashed: RuntimeError"),
        ("healthy_multi_gpu", {"ENVCHECK_SPEC": "/nonexistent/lab.toml"}, 2, "unknown: lab spec unusable"),
    ],
    ids=["healthy", "ecc", "no gpu", "envcheck crashed", "spec unusable"],
)
def test_npd_mode_speaks_the_plugin_protocol(scenario, extra, code, starts):
    proc = run(*npd_config()["rules"][0]["args"], ENVCHECK_FAKE_NVML=scenario, **extra)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    [message] = proc.stdout.splitlines()
    assert message.startswith(starts) and len(message.encode()) <= NPD_MAX_OUTPUT, message


def test_npd_mode_names_how_many_more_checks_failed_within_80_bytes():
    proc = run("healthcheck", "--npd", ENVCHECK_FAKE_NVML="ecc_uncorrected_row_remap")
    [message] = proc.stdout.splitlines()
    # gpu.ecc and gpu.retired_memory fail: the id and the count survive the cut, the summary gives way
    assert message.startswith("gpu.ecc: ") and message.endswith("... (+1 more)") and len(message.encode()) <= 80


def test_a_wrongly_called_npd_plugin_is_unknown_not_a_problem():
    proc = run("healthcheck", "--npd", "--no-such-option", ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    assert proc.returncode == 2 and proc.stdout.startswith("unknown: envcheck called wrongly: No such option")
    assert len(proc.stdout.strip().encode()) <= NPD_MAX_OUTPUT
    both = run("healthcheck", "--npd", "--slurm", ENVCHECK_FAKE_NVML="healthy_multi_gpu")
    assert (
        both.returncode == 2 and both.stdout.strip() == "unknown: envcheck called wrongly: --npd or --slurm, not both"
    )


def test_the_message_is_cut_on_a_character_boundary():
    # NPD cuts bytes; envcheck cuts first so that a multi-byte character is never split
    message = fit_bytes("gpu.temperature: GPU 0 at 91 °C ≥ 87 °C " + "≤" * 40, NPD_MAX_OUTPUT)
    assert len(message.encode()) <= NPD_MAX_OUTPUT and message.endswith("...")
    message.encode().decode("utf-8", errors="strict")
