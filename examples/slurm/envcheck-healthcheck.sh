#!/bin/bash
# envcheck as Slurm's HealthCheckProgram (and, if you like, Prolog): slurm.conf names a program without
# arguments, so this wrapper supplies them. Install it on every node, e.g. /etc/slurm/envcheck-healthcheck.sh.
#
# What it does: the quick doctor (host, driver, GPUs, the lab spec; never torch, never GPU work) under a
# 20 s deadline, one line of output, and on a failed check `scontrol update nodename=<this node>
# state=drain reason="envcheck: <check>: <summary>"`. Exit 1 only for a failed check (a Prolog exiting
# non-zero also drains the node and requeues the job); envcheck's own trouble (a crash, a lab spec it
# cannot read) is said but exits 0 and never drains: it must not take a cluster out of service.
# The whole run, scontrol included (bounded at 10 s), stays well inside Slurm's 60 s limit.
#
# Settings (environment, e.g. in slurmd's unit file):
#   ENVCHECK           the envcheck command (slurmd's PATH is minimal: give a full path)
#   ENVCHECK_SPEC      a lab spec every node must meet (else /etc/envcheck/lab.toml, when it exists)
#   ENVCHECK_TEXTFILE  also write the Prometheus textfile here, e.g. /var/lib/node_exporter/textfile/envcheck.prom
set -u
ENVCHECK=${ENVCHECK:-/usr/local/bin/envcheck}
args=(healthcheck --slurm --drain --require-gpu --deadline 20)
if [[ -n "${ENVCHECK_TEXTFILE:-}" ]]; then
    args+=(--output "$ENVCHECK_TEXTFILE")
fi
exec "$ENVCHECK" "${args[@]}" "$@"
