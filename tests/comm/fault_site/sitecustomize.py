"""Faults in *real* ranks of ``envcheck comm``: put this folder on PYTHONPATH and name one in
ENVCHECK_TEST_COMM_FAULT as ``KIND:RANK:OP`` (KIND: wrong, hang, die). Python imports ``sitecustomize``
at start-up, so every rank (the children envcheck starts, or torchrun's processes) runs the installed
code with one function patched; envcheck itself carries no test hook.

* ``wrong``: after ``ops.run`` of OP on RANK, one element of its result is off by one;
* ``hang``: RANK sleeps for an hour when it reaches OP (after the step's barrier), first creating the file
  ENVCHECK_TEST_COMM_HANG_MARK names, if set (a test then knows the steps before OP are done);
* ``die``: RANK kills itself with SIGKILL when it reaches OP.
"""

import os

_fault = os.environ.get("ENVCHECK_TEST_COMM_FAULT")
if _fault:
    import signal
    import time

    from envcheck.comm import ops, rank

    _kind, _rank, _op = _fault.split(":")
    _me = int(os.environ.get("RANK", "-1"))
    if _me == int(_rank):
        if _kind == "wrong":
            _run = ops.run

            def _wrong_run(op, bufs, rank_, n, group=None):
                _run(op, bufs, rank_, n, group)
                if op == _op:
                    bufs.recv.view(-1)[3] += 1

            ops.run = _wrong_run
        else:
            _step = rank.run_step

            def _faulty_step(ctx, index, step):
                if step.op == _op:
                    if _kind == "hang":
                        if os.environ.get("ENVCHECK_TEST_COMM_HANG_MARK"):
                            open(os.environ["ENVCHECK_TEST_COMM_HANG_MARK"], "w").close()
                        time.sleep(3600)
                    elif _kind == "die":
                        os.kill(os.getpid(), signal.SIGKILL)
                return _step(ctx, index, step)

            rank.run_step = _faulty_step
