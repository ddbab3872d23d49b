"""Importing this module registers every probe (the probe registry loads it by name)."""

from envcheck.probes import compile, host, jax, kernel, net, packages, pci, toolkit, torch  # noqa: F401
from envcheck.probes.nvml import fabric, inventory  # noqa: F401
