#!/usr/bin/env bash
# GPU acceptance check for envcheck bench (issue 3): doctor, the GPU-marked tests, the full bench on one
# GPU, and envcheck-vs-raw-loop figures, in under 5 minutes, with everything saved under $OUT.
#
#   OUT=/tmp/out benchmarks/gpu_check.sh            # BENCH_DEVICE=cuda:0 by default; PYTHON to override
#
# Every step runs under its own timeout (together 290 s, plus at most 2 s each for a step that ignores
# SIGTERM, so the whole check ends inside 5 minutes even if steps hang); its exit code and wall time
# go to $OUT/steps.tsv and $OUT/summary.json, so one failing step never hides the others. The script exits non-zero if any did.
#
# Expected on one H100/H200: doctor ~10 s, pytest -m gpu ~40 s, bench (default) ~80 s, bench_vs_raw ~30 s.
set -u

OUT="${OUT:?set OUT to a directory for the results}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then :
elif [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python
else PYTHON=python3
fi
DEVICE="${BENCH_DEVICE:-cuda:0}"

printf 'step\texit_code\twall_s\tcommand\n' > "$OUT/steps.tsv"
overall=0

step() {  # step NAME TIMEOUT_S COMMAND... ; stdout -> $OUT/NAME.out, stderr -> $OUT/NAME.err
    local name="$1" limit="$2"; shift 2
    local start end rc
    echo "== $name: $*" >&2
    start=$(date +%s.%N)
    timeout --kill-after=2 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    rc=$?
    end=$(date +%s.%N)
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$*" >> "$OUT/steps.tsv"
    echo "   exit $rc" >&2
    [ "$rc" -ne 0 ] && overall=1
    return 0
}

step env 15 bash -c "nvidia-smi; $PYTHON -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count())'"
step doctor 40 "$PYTHON" -m envcheck doctor --json
cp "$OUT/doctor.out" "$OUT/doctor.json" 2>/dev/null
step pytest_gpu 80 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests --junitxml="$OUT/pytest-gpu.xml"
step bench 110 "$PYTHON" -m envcheck bench --device "$DEVICE" --json --save "$OUT/bench.json"
step bench_vs_raw 45 "$PYTHON" benchmarks/bench_vs_raw.py --device "$DEVICE" --rounds 3 --no-suite \
    --json "$OUT/bench_vs_raw.json"

"$PYTHON" - "$OUT" <<'PY' || overall=1
import csv, json, sys
out = sys.argv[1]
with open(f"{out}/steps.tsv") as fh:
    steps = list(csv.DictReader(fh, delimiter="\t"))
json.dump({"steps": steps, "ok": all(s["exit_code"] == "0" for s in steps)}, open(f"{out}/summary.json", "w"), indent=2)
for s in steps:
    print(f"{s['step']:14} exit {s['exit_code']:>3}  {s['wall_s']:>6} s")
PY
exit "$overall"
