"""A torch whose import never finishes (a stuck network filesystem, a wedged driver)."""

import time

time.sleep(3600)
