"""A host name that is not UTF-8, in a *real* envcheck process, without root: put this folder on PYTHONPATH
and give the name in ENVCHECK_FAKE_HOSTNAME as a JSON string (``"n\\udcffode"``: the byte 0xff as Python
decodes it from the kernel, PEP 383; JSON also carries a lone surrogate no environment variable can).

Python imports ``sitecustomize`` at start-up, before envcheck runs: every way Python asks for the name
(``platform.node``, ``socket.gethostname``, ``os.uname``) answers it, so the process under test is the
installed console script, unchanged.
"""

import json
import os

_given = os.environ.get("ENVCHECK_FAKE_HOSTNAME")
if _given:
    import platform
    import socket

    _name = json.loads(_given)
    _uname = os.uname

    def _fake_uname() -> os.uname_result:
        real = _uname()
        return os.uname_result((real.sysname, _name, real.release, real.version, real.machine))

    os.uname = _fake_uname
    platform.node = lambda: _name
    socket.gethostname = lambda: _name
