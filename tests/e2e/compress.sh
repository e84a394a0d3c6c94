#!/usr/bin/env bash
# End-to-end checks of the compression commands on the default model: imatrix, quantize (rtn
# with a mixed recipe, imatrix, gptq, awq), prune (magnitude, wanda 2:4, sparsegpt), and
# perplexity --save-logits / --kl-base on every output; bad usage and bad input exit 2 with one
# "error:" line and leave no output file. (Kept small: the suite also runs it under ASan.)
# usage: compress.sh BRISK [TESTDATA TESTS_DATA_DIR]
set -u
BRISK=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=$ROOT/models/brisk-default.gguf
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"
[ -f "$MODEL" ] || { echo "FAIL: $MODEL missing"; exit 1; }

# Calibration and evaluation text from files in the repository (no network, no packages).
cat "$ROOT"/README.md "$ROOT"/docs/ARCHITECTURE.md | head -c 30000 > "$TMP/calib.txt"
head -c 6000 "$ROOT"/docs/PERFORMANCE.md > "$TMP/eval.txt"
C=(--calib "$TMP/calib.txt" --calib-tokens 1024 -t 2)

for cmd in imatrix quantize prune; do
  expect 0 "$cmd --help" -- "$BRISK" $cmd --help
done
expect 0 "imatrix" -- "$BRISK" imatrix -m "$MODEL" -f "$TMP/calib.txt" -o "$TMP/im.gguf" \
  --calib-tokens 1024 -t 2
grep -q "43 matrices over 1024 tokens" "$TMP/err" || bad "imatrix summary: $(tail -2 "$TMP/err")"

expect 0 "save base logits" -- "$BRISK" perplexity -m "$MODEL" -f "$TMP/eval.txt" --ctx 128 \
  --save-logits "$TMP/base.bin" --json
base_ppl=$(jq .ppl "$TMP/out")

# name | arguments
VARIANTS=(
  "q4_K_m|quantize $MODEL $TMP/v.gguf --type q4_K_m --json"
  "q4_0 imatrix|quantize $MODEL $TMP/v.gguf --type q4_0 --imatrix $TMP/im.gguf"
  "q4_0 gptq|quantize $MODEL $TMP/v.gguf --type q4_0 --method gptq --act-order ${C[*]}"
  "q4_0 awq|quantize $MODEL $TMP/v.gguf --type q4_0 --method awq ${C[*]}"
  "wanda 2:4|prune $MODEL $TMP/v.gguf --method wanda --pattern 2:4 ${C[*]}"
  "sparsegpt 50%|prune $MODEL $TMP/v.gguf --method sparsegpt --sparsity 0.5 --json ${C[*]}"
)
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r name args <<< "$v"
  rm -f "$TMP/v.gguf"
  # shellcheck disable=SC2086
  expect 0 "$name" -- "$BRISK" $args
  [ -s "$TMP/v.gguf" ] || { bad "$name: no output file"; continue; }
  expect 0 "$name: kl" -- "$BRISK" perplexity -m "$TMP/v.gguf" -f "$TMP/eval.txt" --ctx 128 \
    --kl-base "$TMP/base.bin" --json
  jq -e --argjson b "$base_ppl" '.kl.mean > 0 and .kl.top1_agree > 0.5 and .kl.top1_agree <= 1
    and ((.kl.base_ppl - $b) | if . < 0 then -. else . end) < 1e-6 * $b' "$TMP/out" > /dev/null ||
    bad "$name: kl in $(head -c 300 "$TMP/out")"
done
# The last variant also generates (perplexity above already ran every file's forward pass).
expect 0 "run a pruned file" -- "$BRISK" run -m "$TMP/v.gguf" -p "The" -n 4 --seed 1
expect 0 "prune --json" -- "$BRISK" prune "$MODEL" "$TMP/s.gguf" --method magnitude \
  --sparsity 0.5 --json
jq -e '.sparsity == 0.5 and .zeros * 2 == .weights' "$TMP/out" > /dev/null ||
  bad "prune --json: $(head -c 300 "$TMP/out")"

# The base compared with itself: zero divergence, full agreement.
expect 0 "kl self" -- "$BRISK" perplexity -m "$MODEL" -f "$TMP/eval.txt" --ctx 128 \
  --kl-base "$TMP/base.bin" --json
jq -e '.kl.mean < 1e-6 and .kl.top1_agree == 1 and (.kl.delta_ppl_pct | if . < 0 then -. else . end) < 1e-4' "$TMP/out" > /dev/null ||
  bad "kl of the base with itself: $(head -c 400 "$TMP/out")"

# Bad usage and bad input.
rm -f "$TMP/bad.gguf"
expect 2 "unknown type" -- "$BRISK" quantize "$MODEL" "$TMP/bad.gguf" --type q9_9
expect 2 "gptq without calib" -- "$BRISK" quantize "$MODEL" "$TMP/bad.gguf" --type q4_0 --method gptq
expect 2 "gptq with imatrix" -- "$BRISK" quantize "$MODEL" "$TMP/bad.gguf" --type q4_0 \
  --method gptq --imatrix "$TMP/im.gguf" "${C[@]}"
expect 2 "model as imatrix" -- "$BRISK" quantize "$MODEL" "$TMP/bad.gguf" --type q4_0 --imatrix "$MODEL"
expect 2 "missing calib file" -- "$BRISK" quantize "$MODEL" "$TMP/bad.gguf" --type q4_0 \
  --method awq --calib "$TMP/nope.txt"
expect 2 "missing input" -- "$BRISK" quantize "$TMP/nope.gguf" "$TMP/bad.gguf" --type q4_0
expect 2 "wanda without calib" -- "$BRISK" prune "$MODEL" "$TMP/bad.gguf" --method wanda
expect 2 "bad pattern" -- "$BRISK" prune "$MODEL" "$TMP/bad.gguf" --pattern 4:2
expect 2 "sparsity 1" -- "$BRISK" prune "$MODEL" "$TMP/bad.gguf" --sparsity 1
QWEN=${2:-}/models/tiny-qwen2-f16.gguf
if [ -f "$QWEN" ]; then  # calibration needs the trainer's architecture (llama without biases)
  expect 2 "prune a qwen2 model" -- "$BRISK" prune "$QWEN" "$TMP/bad.gguf" --method magnitude
  grep -q "plain RTN quantisation works on any model" "$TMP/err" || bad "qwen2 message: $(cat "$TMP/err")"
fi
[ -e "$TMP/bad.gguf" ] && bad "a failed command left an output file"
printf 'not a logits file at all' > "$TMP/junk.bin"
expect 2 "junk kl base" -- "$BRISK" perplexity -m "$MODEL" -f "$TMP/eval.txt" --ctx 128 \
  --kl-base "$TMP/junk.bin"
expect 2 "kl base, other ctx" -- "$BRISK" perplexity -m "$MODEL" -f "$TMP/eval.txt" --ctx 64 \
  --kl-base "$TMP/base.bin"
head -c 100000 "$TMP/base.bin" > "$TMP/trunc.bin"
expect 2 "truncated kl base" -- "$BRISK" perplexity -m "$MODEL" -f "$TMP/eval.txt" --ctx 128 \
  --kl-base "$TMP/trunc.bin"

finish compress.sh
