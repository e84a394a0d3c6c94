#!/usr/bin/env bash
# The serving benchmark of docs/PERFORMANCE.md: `brisk serve` on the TinyLlama-1.1B-shaped Q4_0
# model (written once by `brisk synth` into $BENCH_DIR), loaded by `brisk bench-serve` with 128-token
# prompts and 64 generated tokens at 1, 8, 16 and 32 concurrent streams, then 8 streams with a 50%
# shared prompt prefix.
# Usage: scripts/bench_serve.sh [build/brisk]   (env: BENCH_DIR, BRISK_TESTDATA, THREADS, PORT,
#        STREAMS, KV_TYPE)
set -euo pipefail
BRISK=${1:-build/brisk}
BENCH_DIR=${BENCH_DIR:-/tmp/brisk-bench}
TESTDATA=${BRISK_TESTDATA:-../shared/testdata}
THREADS=${THREADS:-2}
PORT=${PORT:-18181}
STREAMS=${STREAMS:-1 8 16 32}
KV_TYPE=${KV_TYPE:-f16}
VOCAB="$TESTDATA/tokenizer/ggml-vocab-llama-spm.gguf"
m="$BENCH_DIR/tinyllama-1.1b-q4_0.gguf"
mkdir -p "$BENCH_DIR"
if [ ! -f "$m" ]; then
  vocab_args=()
  [ -f "$VOCAB" ] && vocab_args=(--vocab-from "$VOCAB")
  echo "bench_serve: writing $m" >&2
  "$BRISK" synth --preset tinyllama-1.1b --type q4_0 "${vocab_args[@]}" -o "$m" >&2
fi
log=$(mktemp)
"$BRISK" serve -m "$m" --port "$PORT" -t "$THREADS" --max-num-seqs 32 --kv-type "$KV_TYPE" \
  2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do
  grep -q "listening on" "$log" && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
url="http://127.0.0.1:$PORT"
for c in $STREAMS; do
  n=$((c * 2 < 8 ? 8 : c * 2))
  echo
  echo "### $c streams ($n requests)"
  "$BRISK" bench-serve --url "$url" -c "$c" -n "$n" -p 128 -g 64 --seed "$c"
done
echo
echo "### 8 streams, 50% shared prefix (16 requests)"
"$BRISK" bench-serve --url "$url" -c 8 -n 16 -p 128 -g 64 --shared-prefix 0.5 --seed 99
