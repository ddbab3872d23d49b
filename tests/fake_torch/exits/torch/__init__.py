"""A torch whose import ends the interpreter quietly with status 0 (an ``os._exit`` in a native hook)."""

import os

os._exit(0)
