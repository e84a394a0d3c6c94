#!/usr/bin/env bash
# The speed benchmark of docs/PERFORMANCE.md: TinyLlama-1.1B-shaped random-weight models in Q4_0,
# Q8_0 and Q4_K_M (written once by `brisk synth` into $BENCH_DIR), each measured by `brisk bench`
# at 1 and 2 threads (pp512, tg128, 5 repetitions after a warm-up), plus the bandwidth probe.
# Usage: scripts/bench_speed.sh [build/brisk]   (env: BENCH_DIR, BRISK_TESTDATA, REPS, THREADS)
set -euo pipefail
BRISK=${1:-build/brisk}
BENCH_DIR=${BENCH_DIR:-/tmp/brisk-bench}
TESTDATA=${BRISK_TESTDATA:-../shared/testdata}
REPS=${REPS:-5}
THREADS=${THREADS:-1,2}
VOCAB="$TESTDATA/tokenizer/ggml-vocab-llama-spm.gguf"
mkdir -p "$BENCH_DIR"
vocab_args=()
[ -f "$VOCAB" ] && vocab_args=(--vocab-from "$VOCAB")
for t in q4_0 q8_0 q4_K_m; do
  m="$BENCH_DIR/tinyllama-1.1b-$t.gguf"
  if [ ! -f "$m" ]; then
    echo "bench_speed: writing $m" >&2
    "$BRISK" synth --preset tinyllama-1.1b --type "$t" "${vocab_args[@]}" -o "$m" >&2
  fi
done
"$BRISK" bench --bandwidth -t "$THREADS" -r "$REPS"
"$BRISK" bench --bandwidth -t "$THREADS" -r "$REPS" --bw-streams 1
for t in q4_0 q8_0 q4_K_m; do
  echo
  "$BRISK" bench -m "$BENCH_DIR/tinyllama-1.1b-$t.gguf" -p 512 -n 128 -r "$REPS" -t "$THREADS"
done
