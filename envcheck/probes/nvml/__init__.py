"""NVML: the doctor's inventory, the fabric (NVLink, P2P, topology) and burn telemetry, read through one funnel."""
