"""A torch that starts a helper process and then hangs: the probe must kill both on timeout.

The pids go to the file named by ENVCHECK_TEST_PIDFILE so that a test can check that none survives.
"""

import os
import subprocess
import sys
import time

helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
with open(os.environ["ENVCHECK_TEST_PIDFILE"], "w") as pidfile:
    pidfile.write(f"{os.getpid()} {helper.pid}\n")
time.sleep(3600)
