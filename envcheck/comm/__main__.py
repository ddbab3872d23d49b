"""``python -m envcheck.comm PLAN_JSON``: one rank started by envcheck.comm.launch.

A module of its own (not ``-m envcheck.comm.rank``) so that envcheck.comm.rank is imported as itself:
what runs is the module's functions, as a test that patches them sees them."""

import sys

from envcheck.comm.rank import main

sys.exit(main())
