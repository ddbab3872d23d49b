"""Faults injected into bench workers from the tests, never from envcheck itself: put this folder on a
worker's PYTHONPATH and name the faults in ENVCHECK_TEST_WORKER_FAULTS, as ``DEVICE=FAULT@BENCHMARK``
entries separated by commas (``cpu:1=segv@memory.d2d,cpu:2=hang``; without ``@BENCHMARK``, the first
case). When that case starts in the worker for that device, the fault happens:

* ``segv``: the worker kills itself with SIGSEGV (a native library crashing);
* ``sigkill``: with SIGKILL (what the kernel's OOM killer sends);
* ``hang``: it sleeps for an hour (a wedged driver);
* ``exit``: it exits with status 3, after a line on stderr;
* ``nan``: torch.matmul writes a NaN into its output (a wrong kernel);
* ``leak``: torch.matmul raises an error quoting $HF_TOKEN (a secret in a reason).

Any other Python that starts with this folder on its path (the doctor's torch child) is left alone.
"""

import os
import sys

FAULTS = os.environ.get("ENVCHECK_TEST_WORKER_FAULTS", "")


def _faults_for(device):
    found = {}
    for entry in filter(None, FAULTS.split(",")):
        name, _, fault = entry.partition("=")
        fault, _, bench_id = fault.partition("@")
        if name == device:
            found[bench_id or None] = fault
    return found


def _wrong_matmul(torch):
    real = torch.matmul

    def wrong(a, b, *, out=None):
        real(a, b, out=out)
        out[3, 3] = float("nan")
        return out

    return wrong


def _leaky_matmul(a, b, *, out=None):
    raise RuntimeError(f"could not fetch https://huggingface.co/x?token={os.environ['HF_TOKEN']}: denied")


def _act(fault):
    import signal
    import time

    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "exit":
        sys.stderr.write("injected: the worker gives up\n")
        sys.stderr.flush()
        os._exit(3)
    elif fault in ("nan", "leak"):
        import torch

        torch.matmul = _wrong_matmul(torch) if fault == "nan" else _leaky_matmul


def _install():
    """Wrap the runner's run_plan; which device this worker has is read from its argv when a case starts
    (sys.argv is not set yet while site runs)."""
    import json

    from envcheck.bench import case

    real = case.run_plan
    state = {"first": True}

    def run_plan(spec, plan, dev, budget, **kwargs):
        faults = _faults_for(json.loads(sys.argv[2])["device"]["name"])
        fault = faults.get(spec.id) or (faults.get(None) if state["first"] else None)
        state["first"] = False
        if fault:
            _act(fault)
        return real(spec, plan, dev, budget, **kwargs)

    case.run_plan = run_plan


if FAULTS and "envcheck.bench.worker" in getattr(sys, "orig_argv", []):
    _install()
