"""``envcheck fleet``: many nodes' envcheck reports merged into one answer for the whole fleet.

A lab onboards racks, not machines. Each node runs envcheck where the lab already runs work (Slurm,
Kubernetes, torchrun) and leaves its JSON report somewhere; this package only reads those reports, so
it never schedules anything or logs into a node. read.py (sources → documents, and what was skipped
and why), kinds.py (one adapter per report kind, registered by schema: what the merge takes of each
document; a kind without one is read by its envelope), merge.py (pure functions: the digests → nodes,
drift, slow devices, duplicates → a frozen FleetReport), app.py (sources → FleetReport, parsing in a
worker per CPU), report.py (the envcheck.fleet/1 document), cli.py (the click command).
"""
