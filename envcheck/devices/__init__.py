"""Devices resolved once for every command that uses a GPU (bench, burn, comm)."""
