"""Faults injected into burn workers from the tests, never from envcheck itself: put this folder on a worker's
PYTHONPATH and name the faults in ENVCHECK_TEST_BURN_FAULTS, as ``DEVICE=FAULT`` entries separated by commas
(``cpu:1=mismatch,cpu:2=segv``). In the worker for that device:

* ``mismatch``: the first recompute of the fixed product returns a result with one element changed (a GPU
  that computes one wrong value once);
* ``segv``: the worker kills itself with SIGSEGV at its first check (a native library crashing mid-burn);
* ``hang``: its first check never returns (a wedged driver).

Any other Python that starts with this folder on its path is left alone.
"""

import os
import sys

FAULTS = os.environ.get("ENVCHECK_TEST_BURN_FAULTS", "")


def _fault_for(device):
    for entry in filter(None, FAULTS.split(",")):
        name, _, fault = entry.partition("=")
        if name == device:
            return fault
    return None


def _install():
    """Wrap Load.recompute; the worker's device is read from its argv when the load starts (sys.argv is not
    set yet while site runs)."""
    import json

    from envcheck.burn import load

    real = load.Load.recompute
    state = {"done": False}

    def recompute(self):
        result = real(self)
        fault = _fault_for(json.loads(sys.argv[2])["device"]["name"])
        if fault is None or state["done"]:
            return result
        state["done"] = True
        if fault == "mismatch":
            result.view(-1)[7] += 1000.0
        elif fault == "segv":
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        elif fault == "hang":
            import time

            time.sleep(3600)
        return result

    load.Load.recompute = recompute


if FAULTS and "envcheck.burn.worker" in getattr(sys, "orig_argv", []):
    _install()
