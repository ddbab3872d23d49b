"""Importing this module registers every probe (the probe registry loads it by name)."""

from envcheck.probes import fabric, host, nvml, packages, toolkit, torch  # noqa: F401
