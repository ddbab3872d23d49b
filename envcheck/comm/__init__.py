"""``envcheck comm``: the GPUs working together, over torch.distributed.

ops.py (the collectives, exact verification, nccl-tests' bus-bandwidth factors), plan.py (what every
rank runs), world.py (which world a process belongs to, from the launcher's variables), rank.py (what
one rank does; the only module that imports torch), launch.py (this node's own ranks, as child
processes), app.py (request → run → frozen report), report.py (the envcheck.comm/1 document), cli.py.
"""
