#!/usr/bin/env bash
# Bounded soak of `brisk serve` (make soak): SOAK_SECONDS (default 600) of mixed load against a
# small server (a KV cache small enough to force preemptions): bench-serve rounds with random
# concurrency, prompt and generation lengths and shared prefixes, plus streaming clients that hang
# up mid-stream. After every round the server must be idle again (no running request, no KV block
# in use), and at the end: no request failed, the server's resident memory did not grow by more
# than 10% after the first third of the run (warm-up), and SIGTERM exits 0.
# Usage: scripts/soak_serve.sh [build/brisk]   (env: SOAK_SECONDS, BRISK_TESTDATA, PORT)
set -euo pipefail
BRISK=${1:-build/brisk}
SOAK_SECONDS=${SOAK_SECONDS:-600}
TESTDATA=${BRISK_TESTDATA:-../shared/testdata}
PORT=${PORT:-18282}
dir=$(mktemp -d)
log="$dir/serve.log"
vocab_args=()
[ -f "$TESTDATA/tokenizer/ggml-vocab-llama-spm.gguf" ] &&
  vocab_args=(--vocab-from "$TESTDATA/tokenizer/ggml-vocab-llama-spm.gguf")
"$BRISK" synth --preset tiny --type q8_0 "${vocab_args[@]}" -o "$dir/m.gguf" >/dev/null
"$BRISK" serve -m "$dir/m.gguf" --port "$PORT" -t 2 --max-num-seqs 8 --max-waiting 64 \
  --kv-memory 2 2>"$log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 300); do
  grep -q "listening on" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
url="http://127.0.0.1:$PORT"
fail() { echo "soak: FAIL: $*" >&2; tail -5 "$log" >&2; exit 1; }
metric() { curl -sf "$url/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
idle() {  # waits up to 10 s for the server to be idle with every KV block free
  for _ in $(seq 100); do
    [ "$(metric brisk_requests_running)" = "0" ] && [ "$(metric brisk_requests_waiting)" = "0" ] &&
      [ "$(metric brisk_kv_blocks_used)" = "0" ] && return 0
    sleep 0.1
  done
  return 1
}

start=$(date +%s)
round=0 requests=0 hangups=0 rss0=""
RANDOM=7
while [ $(($(date +%s) - start)) -lt "$SOAK_SECONDS" ]; do
  round=$((round + 1))
  cs=(1 4 8 16); ps=(16 64 200); gs=(8 32 64); fs=(0 0.5)
  c=${cs[RANDOM % 4]} p=${ps[RANDOM % 3]} g=${gs[RANDOM % 3]} f=${fs[RANDOM % 2]}
  n=$((c * 2))
  # Clients that hang up mid-stream, while the round runs.
  for _ in 1 2; do
    curl -sN --max-time 0.3 "$url/v1/completions" -H 'Content-Type: application/json' \
      -d '{"prompt":"Once upon a time","max_tokens":200,"stream":true,"ignore_eos":true}' \
      >/dev/null 2>&1 || true
  done &
  hpid=$!
  hangups=$((hangups + 2))
  out=$("$BRISK" bench-serve --url "$url" -c "$c" -n "$n" -p "$p" -g "$g" --shared-prefix "$f" \
    --seed "$round" --json 2>/dev/null) || fail "round $round: bench-serve failed: $out"
  wait "$hpid" || true
  grep -Eq '"errors": ?0[,}]' <<<"$out" || fail "round $round: errors: $out"
  requests=$((requests + n))
  kill -0 "$pid" 2>/dev/null || fail "the server died"
  idle || fail "round $round: not idle afterwards (running $(metric brisk_requests_running), KV blocks $(metric brisk_kv_blocks_used))"
  # The baseline is taken once a third of the time has passed: by then every kind of round has run
  # and the scratch buffers and HTTP thread stacks have reached their working size.
  if [ -z "$rss0" ] && [ $(($(date +%s) - start)) -ge $((SOAK_SECONDS / 3)) ]; then rss0=$(rss_kib); fi
  echo "soak: round $round (c=$c p=$p g=$g shared=$f): ok; RSS $(rss_kib) KiB, preemptions $(metric brisk_preemptions_total)" >&2
done
rss1=$(rss_kib)
[ -n "$rss0" ] || rss0=$rss1
echo "soak: $round rounds, $requests requests + $hangups hang-ups in $(($(date +%s) - start)) s; RSS after the warm-up third ${rss0} KiB, at the end ${rss1} KiB; aborted $(metric brisk_requests_aborted_total), preemptions $(metric brisk_preemptions_total), prefix hit rate $(metric brisk_prefix_cache_hit_rate)"
[ "$rss1" -le $((rss0 + rss0 / 10)) ] || fail "resident memory grew from $rss0 to $rss1 KiB"
kill -TERM "$pid"
wait "$pid" || fail "serve exited with $? after SIGTERM"
trap 'rm -rf "$dir"' EXIT
echo "soak: OK"
