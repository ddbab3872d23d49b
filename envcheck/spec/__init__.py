"""Lab specs: what every machine of a lab must have, written as TOML and checked by the doctor, with
the minimums bench, comm and burn figures are judged against.

parse.py (text → a validated :class:`LabSpec`, every problem one :class:`SpecError` line), find.py (which
spec applies and reading it, bounded), checks.py (the doctor's checks of a spec), bench.py, comm.py,
burn.py (each command's figures against its minimums), snapshot.py (a spec written from this machine),
cli.py (``envcheck snapshot``). The names other packages use are re-exported here.
"""

from envcheck.spec.find import find_spec, load_spec
from envcheck.spec.parse import BenchMinimum, BurnSpec, CommMinimum, LabSpec, SpecError, parse_spec_text

__all__ = [
    "BenchMinimum",
    "BurnSpec",
    "CommMinimum",
    "LabSpec",
    "SpecError",
    "find_spec",
    "load_spec",
    "parse_spec_text",
]
