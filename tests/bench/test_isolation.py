"""The bench isolated like the doctor, through the installed command: a torch that raises (any
exception), segfaults, hangs or quits on import, a CUDA start that hangs, or an environment variable that
breaks torch or hides every GPU by mistake is one line on stderr and exit 1: never a traceback, never a
hang, never a secret. The fake torches are put first on the path (PYTHONPATH), so the real torch child
of the doctor imports them; the real torch is used where a real variable breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck.core.errors import CommandError

TESTS = Path(__file__).resolve().parents[1]
FAKE_TORCH = TESTS / "fake_torch"
NVML_SITE = TESTS / "nvml_site"
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
#: A short, cheap run: on a healthy machine it takes seconds.
CPU_RUN = ["bench", "--device", "cpu", "--quick", "--only", "memory"]
DOCTOR = "`envcheck doctor` says why"
#: The torch child's time limit where the fake hangs (ENVCHECK_TORCH_TIMEOUT), so that a hang is over quickly;
#: the real torch keeps the default, since its import takes seconds on a busy machine.
HANG_S = "3"


def bench(args: list[str], *, path: list[Path] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command with ``path`` first on PYTHONPATH; a hang fails the test, it does not stall it."""
    environment = {**os.environ, **env}
    environment["PYTHONPATH"] = os.pathsep.join([*map(str, path), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([ENVCHECK, *args], capture_output=True, text=True, env=environment, timeout=90)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit 1 and said why in exactly one line on stderr, and nothing on stdout."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("envcheck bench: error: "), proc.stderr
    return proc.stderr.strip()


@pytest.mark.parametrize(
    ("fake", "says"),
    [
        ("raises", "torch cannot be imported (OSError: libcudnn.so.9: cannot open shared object file"),
        ("crashes", "torch cannot be imported (the interpreter was killed by SIGSEGV"),
        ("hangs", "torch cannot be imported (import torch did not finish within 3 s, in a child process)"),
        ("exits", "torch cannot be imported (the child exited without reporting a result"),
    ],
)
def test_a_torch_that_breaks_on_import_is_one_line_and_exit_1(fake, says):
    line = one_line(bench(CPU_RUN, path=[FAKE_TORCH / fake], ENVCHECK_TORCH_TIMEOUT=HANG_S))
    assert says in line and line.endswith(DOCTOR)


def test_a_torch_whose_cuda_start_hangs_is_one_line_for_a_gpu_run():
    args = ["bench", "--device", "cuda", "--quick"]
    line = one_line(bench(args, path=[FAKE_TORCH / "cuda_init_hangs"], ENVCHECK_TORCH_TIMEOUT=HANG_S))
    assert "torch cannot be used (CUDA initialisation (torch.cuda.is_available()) did not finish within 3 s" in line


def test_a_variable_that_makes_torchs_import_raise_a_value_error_is_one_line():
    """TORCH_LOGS=garbage makes the real torch raise ValueError while importing: not an ImportError."""
    line = one_line(bench(CPU_RUN, TORCH_LOGS="garbage"))
    assert "torch cannot be imported (ValueError: Invalid log settings: garbage" in line


def test_a_secret_in_torchs_import_error_is_redacted(tmp_path):
    token = "hf_" + "Zq9xW3vB7n" * 3 + "K2mP"  # hf_ + 34 characters, a real token's shape
    password = "s3cr3t-mirror-pass"
    broken = tmp_path / "torch"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "import os\n"
        "raise RuntimeError('cannot fetch https://ci:' + os.environ['MIRROR_PASSWORD'] + '@mirror.example/simple '"
        " '(HF_TOKEN=' + os.environ['HF_TOKEN'] + ')')\n"
    )
    line = one_line(bench(CPU_RUN, path=[tmp_path], HF_TOKEN=token, MIRROR_PASSWORD=password))
    assert token not in line and password not in line
    assert "torch cannot be imported (RuntimeError: cannot fetch https://<redacted>@mirror.example/simple" in line


def test_visible_devices_that_hide_every_gpu_by_mistake_is_one_line_not_a_cpu_run():
    """On a machine with four GPUs (the fake NVML library, in the real process), `envcheck bench` under
    CUDA_VISIBLE_DEVICES=garbage would benchmark the CPU and look fine: it says what hid the GPUs."""
    proc = bench(
        ["bench", "--quick"], path=[NVML_SITE], ENVCHECK_FAKE_NVML="healthy_multi_gpu", CUDA_VISIBLE_DEVICES="garbage"
    )
    line = one_line(proc)
    assert "CUDA_VISIBLE_DEVICES entry 'garbage' is neither a GPU index nor a GPU-/MIG- UUID" in line
    assert line.endswith("no GPU to benchmark; fix CUDA_VISIBLE_DEVICES, or use --device cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not shutil.which("nvidia-smi"), reason="needs an NVIDIA GPU")
def test_a_garbage_allocator_config_on_a_real_gpu_is_one_line():
    """PYTORCH_CUDA_ALLOC_CONF is read at the first CUDA allocation: every case would crash on it."""
    line = one_line(
        bench(["bench", "--device", "cuda:0", "--quick", "--only", "memory.d2d"], PYTORCH_CUDA_ALLOC_CONF="garbage")
    )
    assert "garbage" in line.lower() or "alloc" in line.lower()


def test_a_cuda_start_that_hangs_after_a_clean_import_stops_a_gpu_bench_only():
    """The real torch child over a torch that imports but whose CUDA start hangs: a GPU bench cannot run,
    a CPU bench (which never starts CUDA) can."""
    from envcheck.devices.resolve import torch_ready
    from envcheck.probes.torch import probe_torch

    env = {**os.environ, "PYTHONPATH": str(FAKE_TORCH / "cuda_init_hangs"), "ENVCHECK_TORCH_TIMEOUT": HANG_S}
    info = probe_torch(env)
    assert info.status == "timeout" and info.import_s is not None  # imported, then hung
    torch_ready(info, gpus=False)
    with pytest.raises(CommandError) as err:
        torch_ready(info, gpus=True)
    assert err.value.exit_code == 1
    assert str(err.value).startswith("torch cannot be used (CUDA initialisation (torch.cuda.is_available())")
