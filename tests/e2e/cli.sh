#!/usr/bin/env bash
# End-to-end checks of the brisk CLI: --help everywhere, exit code 2 with a one-line error on bad
# usage and bad input, and the synth -> inspect -> tokenize -> logits -> run -> convert flow.
# usage: cli.sh BRISK TESTDATA TESTS_DATA_DIR
set -u
BRISK=$1
DATA=$2
STRICT_STDERR=1
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

# --help on every subcommand
expect 0 "help" -- "$BRISK" --help
for c in run inspect tokenize logits synth convert bench serve bench-serve; do
  expect 0 "$c --help" -- "$BRISK" "$c" --help
  grep -q "Usage\|Options" "$TMP/out" || bad "$c --help printed no usage"
done

# bad usage
expect 2 "no subcommand" -- "$BRISK"
expect 2 "unknown subcommand" -- "$BRISK" frobnicate
expect 2 "unknown flag" -- "$BRISK" run --no-such-flag
expect 2 "missing model" -- env BRISK_DEFAULT_MODEL="$TMP/none.gguf" "$BRISK" run -p hi
# Without -m, run uses the embedded default model (models/brisk-default.gguf).
expect 0 "run the default model" -- "$BRISK" run -p "The sea" -n 8 --seed 1
expect 2 "bad number" -- "$BRISK" run -m x -n lots

# bad input files
printf 'GGUF\x03\x00\x00\x00' >"$TMP/trunc.gguf"
head -c 5000 "$DATA/models/tiny-llama-Q4_0.gguf" >"$TMP/cut.gguf"
head -c 1000 "$DATA/models/stories260K.llama2c.bin" >"$TMP/cut.bin"
echo "not a model" >"$TMP/text.gguf"
expect 2 "missing file" -- "$BRISK" inspect "$TMP/nope.gguf"
expect 2 "truncated header" -- "$BRISK" inspect "$TMP/trunc.gguf"
expect 2 "truncated tensors" -- "$BRISK" run -m "$TMP/cut.gguf" -p hi -n 1
expect 2 "text file" -- "$BRISK" inspect "$TMP/text.gguf"
expect 2 "truncated llama2c" -- "$BRISK" inspect "$TMP/cut.bin"
expect 2 "vocab-only model cannot run" -- "$BRISK" run -m "$DATA/tokenizer/ggml-vocab-gpt-2.gguf" -p hi -n 1
expect 2 "bad type" -- "$BRISK" synth --type q9_9 -o "$TMP/x.gguf"
expect 2 "bad preset" -- "$BRISK" synth --preset gpt-17 -o "$TMP/x.gguf"
expect 2 "bad token id" -- "$BRISK" logits -m "$DATA/models/stories260K.gguf" --tokens "1 99999" -o "$TMP/l.f32"
expect 2 "bad token text" -- "$BRISK" logits -m "$DATA/models/stories260K.gguf" --tokens "1 x" -o "$TMP/l.f32"
expect 2 "bad sampling" -- "$BRISK" run -m "$DATA/models/stories260K.gguf" -p hi -n 2 --top-p 7
expect 2 "unknown chat template" -- "$BRISK" run -m "$DATA/models/stories260K.gguf" -p hi -n 2 --chat --chat-template nope
[ -e "$TMP/x.gguf" ] && bad "a failed synth left an output file"

# the working flow
expect 0 "synth" -- "$BRISK" synth --preset tiny --type q4_0 --vocab-from "$DATA/tokenizer/ggml-vocab-llama-spm.gguf" -o "$TMP/m.gguf" -t 2
expect 0 "inspect" -- "$BRISK" inspect "$TMP/m.gguf"
grep -q "blk.0.attn_q.weight" "$TMP/out" || bad "inspect lists no tensors"
expect 0 "inspect --json" -- "$BRISK" inspect --json "$TMP/m.gguf"
grep -q '"architecture": "llama"' "$TMP/out" || bad "inspect --json lacks the architecture"
expect 0 "tokenize vocab-only" -- "$BRISK" tokenize -m "$DATA/tokenizer/ggml-vocab-llama-spm.gguf" -p "Hello world"
[ "$(cat "$TMP/out")" = "1 15043 3186" ] || bad "tokenize printed '$(cat "$TMP/out")'"
expect 0 "logits" -- "$BRISK" logits -m "$TMP/m.gguf" -p "Hello world" -o "$TMP/l.f32" -t 2
[ "$(stat -c %s "$TMP/l.f32")" = $((3 * 32000 * 4)) ] || bad "logits file has the wrong size"
expect 0 "run" -- "$BRISK" run -m "$TMP/m.gguf" -p "Hello" -n 8 --seed 3 -t 2
grep -q "generation:" "$TMP/err" || bad "run printed no speed line"
cp "$TMP/out" "$TMP/out1"
expect 0 "run again" -- "$BRISK" run -m "$TMP/m.gguf" -p "Hello" -n 8 --seed 3 -t 1
cmp -s "$TMP/out" "$TMP/out1" || bad "same seed gave different text"
expect 0 "run --chat" -- "$BRISK" run -m "$TMP/m.gguf" -p "Hi" -n 4 --seed 1 --chat --chat-template llama2 --system "Be brief" -t 2
expect 2 "chat without template" -- "$BRISK" run -m "$TMP/m.gguf" -p "Hi" -n 4 --chat
grep -q "chat template" "$TMP/err" || bad "missing-template error does not say why"
expect 0 "convert llama2c" -- "$BRISK" convert "$DATA/models/stories260K.llama2c.bin" "$TMP/s.gguf" --vocab-from "$DATA/models/stories260K.gguf"
expect 0 "convert type" -- "$BRISK" convert "$TMP/s.gguf" "$TMP/s8.gguf" --type q8_0
expect 0 "run converted" -- "$BRISK" run -m "$TMP/s8.gguf" -p "Once" -n 4 --temp 0

# bench: bad flags, then a tiny run (table and JSON)
expect 2 "bench missing model" -- "$BRISK" bench -p 8
expect 2 "bench -p 0" -- "$BRISK" bench -m "$TMP/m.gguf" -p 0
expect 2 "bench -r 0" -- "$BRISK" bench -m "$TMP/m.gguf" -r 0
expect 2 "bench bad threads" -- "$BRISK" bench -m "$TMP/m.gguf" --threads 1,x
expect 2 "bench model file missing" -- "$BRISK" bench -m "$TMP/nope.gguf"
expect 0 "bench" -- "$BRISK" bench -m "$TMP/m.gguf" -p 8 -n 4 -r 2 --threads 1,2 --bw-mib 8
grep -q "| tg4 |" "$TMP/out" || bad "bench table has no tg4 row"
grep -q "GMAC/s" "$TMP/out" || bad "bench table has no compute bound"
expect 0 "bench --json" -- "$BRISK" bench -m "$TMP/m.gguf" -p 8 -n 4 -r 1 --warmup 0 -t 1 --bw-mib 8 --json
grep -q "\"roofline\"" "$TMP/out" || bad "bench --json has no roofline"
expect 2 "bench --decode-batch 0" -- "$BRISK" bench -m "$TMP/m.gguf" --decode-batch 0
expect 0 "bench --decode-batch" -- "$BRISK" bench -m "$TMP/m.gguf" -p 8 -n 4 -r 1 -t 2 --bw-mib 8 \
  --decode-batch 1,3 --profile
grep -q "| tg4x3 |" "$TMP/out" || bad "bench --decode-batch has no tg4x3 row"
grep -q "profile, 2 threads, tg4x3" "$TMP/out" || bad "bench --decode-batch --profile has no profile"
expect 0 "bench --decode-batch --json" -- "$BRISK" bench -m "$TMP/m.gguf" -p 8 -n 4 -r 1 -t 1 \
  --bw-mib 8 --decode-batch 2 --json
grep -q "\"sequences\": 2" "$TMP/out" || bad "bench --decode-batch --json has no sequences"
expect 0 "bench --bandwidth" -- "$BRISK" bench --bandwidth --bw-mib 8 -r 2 -t 2
grep -q "GB/s" "$TMP/out" || bad "bench --bandwidth printed no table"

# serve and bench-serve: bad flags, then a server on a free port, a second one on the same port
# (refused with one line), a small load test against it (table and JSON), and SIGTERM -> exit 0.
expect 2 "serve without -m and no default model" -- env BRISK_DEFAULT_MODEL="$TMP/none.gguf" "$BRISK" serve --port 0
expect 2 "run without -m and no default model" -- env BRISK_DEFAULT_MODEL="$TMP/none.gguf" "$BRISK" run -p hi -n 2
expect 2 "serve bad port" -- "$BRISK" serve -m "$TMP/m.gguf" --port 70000
expect 2 "serve bad kv type" -- "$BRISK" serve -m "$TMP/m.gguf" --kv-type q4_0
expect 2 "serve bad chat template" -- "$BRISK" serve -m "$TMP/m.gguf" --chat-template nope
expect 2 "serve model missing" -- "$BRISK" serve -m "$TMP/nope.gguf"
expect 2 "bench-serve bad url" -- "$BRISK" bench-serve --url ftp://127.0.0.1:1
expect 2 "bench-serve bad prefix" -- "$BRISK" bench-serve --shared-prefix 2
expect 2 "bench-serve unreachable" -- "$BRISK" bench-serve --url http://127.0.0.1:1 -n 1
"$BRISK" serve -m "$TMP/m.gguf" --port 0 -t 2 --max-num-seqs 4 2>"$TMP/serve.err" &
SERVE_PID=$!
URL=""
for _ in $(seq 1 300); do
  URL=$(sed -n 's|^serve: listening on \(http://[^ ]*\)$|\1|p' "$TMP/serve.err")
  [ -n "$URL" ] && break
  kill -0 $SERVE_PID 2>/dev/null || break
  sleep 0.1
done
if [ -z "$URL" ]; then
  bad "serve did not start: $(cat "$TMP/serve.err")"
else
  expect 2 "serve port in use" -- timeout 60 "$BRISK" serve -m "$TMP/m.gguf" --port "${URL##*:}"
  grep -q "cannot listen" "$TMP/err" || bad "port-in-use error does not say why"
  expect 0 "bench-serve" -- "$BRISK" bench-serve --url "$URL" -c 4 -n 8 -p 40 -g 6 --shared-prefix 0.5
  grep -q "generated tokens/s" "$TMP/out" || bad "bench-serve table has no throughput row"
  expect 0 "bench-serve --json" -- "$BRISK" bench-serve --url "$URL" -c 2 -n 4 -p 40 -g 4 --shared-prefix 0.8 --json
  grep -q '"errors": 0' "$TMP/out" || bad "bench-serve --json reports errors: $(cat "$TMP/out")"
  grep -q '"generated_tokens": 16' "$TMP/out" || bad "bench-serve did not generate 4 x 4 tokens"
  grep -q '"prefix_cache_hit_rate": 0\.[1-9]' "$TMP/out" || bad "bench-serve saw no prefix-cache hits"
fi
kill -TERM $SERVE_PID 2>/dev/null
wait $SERVE_PID
rc=$?
[ "$rc" = 0 ] || bad "serve exited $rc after SIGTERM: $(tail -3 "$TMP/serve.err")"

finish cli.sh
