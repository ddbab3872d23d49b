"""Fake NVML in a *real* envcheck process: put this folder on PYTHONPATH and name a scenario in
ENVCHECK_FAKE_NVML (tests/fakenvml.py). Python imports ``sitecustomize`` at start-up, before envcheck
runs, so the process under test is the installed console script, unchanged, over the fake library.

ENVCHECK_FAKE_NVML_CALLS=<file>: the fake's C calls are written there as a JSON list when the process exits.
ENVCHECK_FAKE_CRASH=1 additionally makes the doctor's runner raise, to test how a crash is reported.

A fake node has ample disk: under a scenario, every filesystem but /dev/shm answers 500 GiB free of 1 TiB, so
a test that expects "no problems" does not turn on how full the disk of the machine running the suite is.
ENVCHECK_FAKE_DISK_FREE=<bytes> gives another free figure; ``real`` leaves the machine's own.
"""

import os
import sys

_scenario = os.environ.get("ENVCHECK_FAKE_NVML")
if _scenario:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests import fakenvml

    _lib = None if _scenario == "no_library" else fakenvml.SCENARIOS[_scenario]()
    fakenvml.activate(_lib)
    _calls_to = os.environ.get("ENVCHECK_FAKE_NVML_CALLS")
    if _calls_to and _lib is not None:
        import atexit
        import json

        # Registered before envcheck runs, so it runs after envcheck's own exit handlers (atexit is last in,
        # first out): the file holds every C call the process made, its NVML shutdown included.
        atexit.register(lambda: open(_calls_to, "w").write(json.dumps(_lib.calls)))

_disk = os.environ.get("ENVCHECK_FAKE_DISK_FREE", "ample" if _scenario else "real")
if _disk != "real":
    import shutil

    _total = 1 << 40
    _free = 500 << 30 if _disk == "ample" else int(_disk)

    _real_disk_usage = shutil.disk_usage

    def _disk_usage(path):
        if os.fspath(path).startswith("/dev/shm"):
            return _real_disk_usage(path)  # shared memory is not disk: host.shm reads the machine's own
        os.stat(path)  # a path that does not exist still raises, as statvfs would
        return shutil._ntuple_diskusage(_total, _total - _free, _free)

    shutil.disk_usage = _disk_usage

if os.environ.get("ENVCHECK_FAKE_CRASH") == "1":
    import envcheck.doctor.health

    def _crash(*args, **kwargs):
        raise RuntimeError("simulated crash inside envcheck")

    envcheck.doctor.health.run_doctor = _crash
