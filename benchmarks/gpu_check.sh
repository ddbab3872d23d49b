#!/usr/bin/env bash
# GPU acceptance check for envcheck bench: doctor, the GPU-marked tests, the full bench on one GPU, and
# envcheck-vs-raw-loop figures, in under 5 minutes, with everything saved under $OUT.
#
#   OUT=/tmp/out benchmarks/gpu_check.sh            # BENCH_DEVICE=cuda:0 by default; PYTHON to override
#
# Every step runs under its own timeout (together 275 s), then gets SIGINT and a grace of 2 s (the bench
# 8 s, to finish the operation it is in and save what it measured) before SIGKILL, so the whole check
# ends inside 5 minutes even if steps hang (291 s at most). Each step's exit code and wall time go to
# $OUT/steps.tsv and $OUT/summary.json, so one failing step never hides the others; the script exits
# non-zero if any failed.
# The bench step leaves its text report in bench.out, the JSON (--save) in bench.json and the Markdown
# (--output) in bench.md.
#
# Expected on one H100/H200: doctor ~10 s, pytest -m gpu ~60 s, bench (default) ~90 s (the torch child
# that proves torch imports and CUDA starts comes first), bench_vs_raw ~30 s.
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

step() {  # [GRACE=S] step NAME TIMEOUT_S COMMAND... ; stdout -> $OUT/NAME.out, stderr -> $OUT/NAME.err
    local name="$1" limit="$2" grace="${GRACE:-2}"; shift 2
    local start end rc
    echo "== $name: $*" >&2
    start=$(date +%s.%N)
    # SIGINT, as Ctrl-C would: the bench then still saves what it measured (exit 130), pytest its junit XML.
    timeout --signal=INT --kill-after="$grace" "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    rc=$?
    end=$(date +%s.%N)
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$*" >> "$OUT/steps.tsv"
    echo "   exit $rc" >&2
    [ "$rc" -ne 0 ] && overall=1
    return 0
}

step env 15 bash -c "nvidia-smi; $PYTHON -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count())'"
step doctor 35 "$PYTHON" -m envcheck doctor --json
cp "$OUT/doctor.out" "$OUT/doctor.json" 2>/dev/null
step pytest_gpu 90 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests --junitxml="$OUT/pytest-gpu.xml"
GRACE=8 step bench 95 "$PYTHON" -m envcheck bench --device "$DEVICE" --save "$OUT/bench.json" --output "$OUT/bench.md"
step bench_vs_raw 40 "$PYTHON" benchmarks/bench_vs_raw.py --device "$DEVICE" --rounds 3 --no-suite \
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
