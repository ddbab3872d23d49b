"""Faults in *real* ranks of ``envcheck comm``: put this folder on PYTHONPATH and name them in
ENVCHECK_TEST_COMM_FAULT as ``KIND:RANK:ARG`` (several: separated by commas). Python imports
``sitecustomize`` at start-up, so every rank (the children envcheck starts, or torchrun's processes) runs
the installed code with one function patched; envcheck itself carries no test hook.

* ``wrong:RANK:OP``: after ``ops.run`` of OP on RANK, one element of its result is off by one;
* ``hang:RANK:OP``: RANK sleeps for an hour when it reaches OP (after the step's barrier), first creating
  the file ENVCHECK_TEST_COMM_HANG_MARK names, if set (a test then knows the steps before OP are done);
* ``die:RANK:OP``: RANK kills itself with SIGKILL when it reaches OP;
* ``stall:RANK:OP``: on RANK, the first ``ops.run`` of OP after each ``dist.barrier`` (the start of a timed
  run on CPU ranks) first sleeps ENVCHECK_TEST_COMM_STALL_S seconds: a fixed cost per timed run, as the
  launch of a call is on a GPU;
* ``late_heartbeat:RANK:SECONDS``: RANK's heartbeat thread starts SECONDS late, as on a loaded machine.

And a record, not a fault: with ENVCHECK_TEST_COMM_RECORD naming a folder, each rank writes there
(``rank-N.jsonl``) one line per ``dist.new_group`` and per point-to-point transfer, with the group it used.
"""

import json
import os

_faults = [f.split(":") for f in os.environ.get("ENVCHECK_TEST_COMM_FAULT", "").split(",") if f]
_record = os.environ.get("ENVCHECK_TEST_COMM_RECORD")
_me = int(os.environ.get("RANK", "-1"))
#: The stall fault's state: whether a barrier has just ended a timed run's start.
_state = {"after_barrier": False, "stall_s": float(os.environ.get("ENVCHECK_TEST_COMM_STALL_S") or 0)}

for _kind, _rank, _arg in _faults:
    if int(_rank) != _me:
        continue
    import signal
    import time

    from envcheck.comm import ops, rank

    if _kind == "wrong":

        def _wrong_run(op, bufs, rank_, n, group=None, _run=ops.run, _op=_arg):
            _run(op, bufs, rank_, n, group)
            if op == _op:
                bufs.recv.view(-1)[3] += 1

        ops.run = _wrong_run
    elif _kind == "stall":
        import torch.distributed as dist

        def _barrier(*args, _barrier=dist.barrier, _state=_state, **kwargs):
            work = _barrier(*args, **kwargs)
            _state["after_barrier"] = True
            return work

        def _stalled_run(op, bufs, rank_, n, group=None, _run=ops.run, _op=_arg, _state=_state):
            if op == _op and _state["after_barrier"]:
                _state["after_barrier"] = False
                time.sleep(_state["stall_s"])
            _run(op, bufs, rank_, n, group)

        dist.barrier = _barrier
        ops.run = _stalled_run
    elif _kind == "late_heartbeat":

        def _late_heartbeat(*args, _heartbeat=rank._heartbeat, _late_s=float(_arg)):
            time.sleep(_late_s)
            _heartbeat(*args)

        rank._heartbeat = _late_heartbeat
    else:

        def _faulty_step(ctx, index, step, _step=rank.run_step, _kind=_kind, _op=_arg):
            if step.op == _op:
                if _kind == "hang":
                    if os.environ.get("ENVCHECK_TEST_COMM_HANG_MARK"):
                        open(os.environ["ENVCHECK_TEST_COMM_HANG_MARK"], "w").close()
                    time.sleep(3600)
                elif _kind == "die":
                    os.kill(os.getpid(), signal.SIGKILL)
            return _step(ctx, index, step)

        rank.run_step = _faulty_step

if _record:
    import torch.distributed as dist

    def _write(**line):
        with open(os.path.join(_record, f"rank-{_me}.jsonl"), "a") as out:
            out.write(json.dumps(line) + "\n")

    def _group(group):
        return "world" if group is None or group is dist.group.WORLD else repr(group)

    def _new_group(*args, _new_group=dist.new_group, **kwargs):
        _write(call="new_group", backend=str(kwargs.get("backend")))
        return _new_group(*args, **kwargs)

    def _batch(p2p_ops, _batch=dist.batch_isend_irecv):
        for p in p2p_ops:
            _write(call=p.op.__name__, peer=p.peer, group=_group(p.group))
        return _batch(p2p_ops)

    def _pair(name, original):
        def call(tensor, peer=None, group=None, *args, **kwargs):
            _write(call=name, peer=peer, group=_group(group))
            return original(tensor, peer, group, *args, **kwargs)

        return call

    dist.new_group = _new_group
    dist.batch_isend_irecv = _batch
    dist.send = _pair("send", dist.send)
    dist.recv = _pair("recv", dist.recv)
