"""A torch whose import kills the interpreter with SIGSEGV, as a broken native library does."""

import ctypes

ctypes.string_at(0)  # read address 0: a segmentation fault
