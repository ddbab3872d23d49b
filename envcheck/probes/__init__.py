"""Probes touch the world (NVML, /proc, psutil, a torch child process) and return plain data.

"Not there" is a value (None or :class:`envcheck.core.model.NA`), never an exception.
"""
