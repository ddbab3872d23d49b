"""Which world a process is a rank of, read from the environment a launcher sets (no torch here).

Three launchers are understood, in this order:

* **torchrun** (and anything else that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``;
  ``LOCAL_RANK`` picks the GPU). Under torchrun the agent already serves the rendezvous store at
  ``MASTER_ADDR:MASTER_PORT`` (``TORCHELASTIC_USE_AGENT_STORE=True``): every rank is then its client.
* **srun**: ``SLURM_PROCID`` (rank), ``SLURM_STEP_NUM_TASKS`` (world size, set for a job step only, so
  a batch script that runs ``envcheck comm`` directly, outside ``srun``, is not mistaken for a rank of
  a world of ``SLURM_NTASKS`` processes that will never come) and ``SLURM_LOCALID`` (the GPU).
  Slurm sets no rendezvous address: the sbatch file exports ``MASTER_ADDR`` (the first node of the
  job) and ``MASTER_PORT``.
* none of them: ``envcheck comm`` starts its own ranks on this machine (envcheck.comm.launch), which
  sets the torchrun variables for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class WorldError(ValueError):
    """The launcher's variables are there but unusable (a missing MASTER_ADDR, a rank out of range)."""


@dataclass(frozen=True)
class World:
    """This process's place in the world, and where the rendezvous store is."""

    rank: int
    size: int
    local_rank: int
    master_addr: str
    master_port: int
    #: ``torchrun``, ``slurm``, ``env`` (the variables set by hand) or ``envcheck`` (our own launch).
    launcher: str
    #: The launcher serves the store (torchrun's agent): rank 0 must not start one of its own.
    agent_store: bool = False
    #: Tells one run's keys in a shared store from another's (torchrun restarts reuse the store).
    run_id: str = "envcheck"


#: Set by envcheck.comm.launch on the ranks it starts, so their world is reported as envcheck's own.
LAUNCHED_BY_ENVCHECK = "ENVCHECK_COMM_LAUNCHED"


def _int(env: Mapping[str, str], name: str) -> int:
    text = env.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise WorldError(f"{name}={text!r} is not a number") from None


def detect(env: Mapping[str, str]) -> World | None:
    """The world this process is a rank of, or None when no launcher started it (then ``envcheck
    comm`` launches its own ranks). Raises :class:`WorldError` when the variables cannot be used."""
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        if env.get(LAUNCHED_BY_ENVCHECK):
            launcher = "envcheck"
        elif env.get("TORCHELASTIC_RUN_ID"):
            launcher = "torchrun"
        else:
            launcher = "env"
        run_id = f"{env.get('TORCHELASTIC_RUN_ID', 'envcheck')}.{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        agent = env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        return _world(env, rank, size, local, launcher, agent, run_id, "RANK, WORLD_SIZE")
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        rank, size = _int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS")
        if size <= 1:
            return None  # one task: nothing to join, envcheck starts this node's ranks itself
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        run_id = f"slurm.{env.get('SLURM_JOB_ID', '0')}.{env.get('SLURM_STEP_ID', '0')}"
        return _world(env, rank, size, local, "slurm", False, run_id, "SLURM_PROCID, SLURM_STEP_NUM_TASKS")
    return None


def _world(
    env: Mapping[str, str], rank: int, size: int, local: int, launcher: str, agent: bool, run_id: str, given: str
) -> World:
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise WorldError(
            f"{given} are set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: set "
            "MASTER_ADDR to rank 0's host and MASTER_PORT to a free port on it (under Slurm: "
            'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1))'
        )
    port = _int(env, "MASTER_PORT")
    if not 0 < port < 65536:
        raise WorldError(f"MASTER_PORT={port} is not a TCP port")
    if size < 1 or not 0 <= rank < size:
        raise WorldError(f"rank {rank} does not fit a world of {size}")
    if local < 0:
        raise WorldError(f"local rank {local} is negative")
    return World(rank, size, local, env["MASTER_ADDR"], port, launcher, agent, run_id)
