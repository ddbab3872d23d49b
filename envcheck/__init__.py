"""envcheck: is this machine ready for deep-learning work, and if not, what is wrong and how to fix it.

Importing the package stays cheap on purpose: the Docker healthcheck runs ``envcheck doctor --quick``
every 30 s, so nothing here may import torch, rich or NVML at import time.
"""

__version__ = "0.3.0"
