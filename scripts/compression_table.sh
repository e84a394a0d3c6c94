#!/usr/bin/env bash
# Regenerates docs/COMPRESSION.md (`make compression-table`): every compression method of issue 6
# applied to brisk's default model, each measured by file size, bits per weight, perplexity and
# KL-divergence to the F16 model on held-out text, top-1 agreement, and generation speed.
#
# Held-out text: the validation documents of `brisk data prepare --val-fraction 0.01 --seed 0`
# over the default model's corpus (the split it was trained with), the first EVAL_BYTES of them.
# Calibration text: every CALIB_STEP-th training document, up to CALIB_BYTES; the calibration
# passes read its first CALIB_TOKENS tokens.
# Usage: scripts/compression_table.sh [BRISK_BINARY]   (env: MODEL, OUT, THREADS, EVAL_BYTES,
#        CALIB_BYTES, CALIB_STEP, CALIB_TOKENS, CTX, DOC)
set -euo pipefail
cd "$(dirname "$0")/.."
BRISK=${1:-build/brisk}
MODEL=${MODEL:-models/brisk-default.gguf}
OUT=${OUT:-build/compress}
T=${THREADS:-2}
CTX=${CTX:-256}
EVAL_BYTES=${EVAL_BYTES:-100000}
CALIB_BYTES=${CALIB_BYTES:-200000}
CALIB_STEP=${CALIB_STEP:-500}
CALIB_TOKENS=${CALIB_TOKENS:-16384}
DOC=${DOC:-docs/COMPRESSION.md}
mkdir -p "$OUT"

log() { echo "compression_table: $*" >&2; }

if [ ! -f "$OUT/data.val.bin" ]; then
  log "preparing the held-out split"
  "$BRISK" data prepare --tokenizer "$MODEL" -i fortune:/usr/share/games/fortunes \
    gcide:/usr/share/dictd/gcide.dict.dz -o "$OUT/data" --val-fraction 0.01 --seed 0 >&2
fi
docs_text() {  # shard, bytes, step: every step-th decoded document (special tokens dropped),
  # blank-line separated, up to `bytes`. head closes the pipe early: the writers' SIGPIPE is
  # expected, hence the subshell without pipefail.
  (set +o pipefail
   "$BRISK" data inspect "$1" --tokenizer "$MODEL" --show 1000000 | tail -n +2 |
     awk -v step="$3" '/^--- doc [0-9]+ \([0-9]+ tokens\)$/ { keep = ($3 % step == 0); if (keep) print ""; next }
                       keep { gsub(/<\|endoftext\|>/, ""); print }' | head -c "$2")
}
docs_text "$OUT/data.val.bin" "$EVAL_BYTES" 1 > "$OUT/eval.txt"
# Every CALIB_STEP-th training document: both sources in the corpus's proportions.
docs_text "$OUT/data.train.bin" "$CALIB_BYTES" "$CALIB_STEP" > "$OUT/calib.txt"

log "base distributions (F16)"
"$BRISK" perplexity -m "$MODEL" -f "$OUT/eval.txt" --ctx "$CTX" -t "$T" \
  --save-logits "$OUT/base.logits" --json > "$OUT/f16.ppl.json"
"$BRISK" imatrix -m "$MODEL" -f "$OUT/calib.txt" -o "$OUT/imatrix.gguf" -t "$T" \
  --calib-tokens "$CALIB_TOKENS"

# name | output file | command that writes it (empty: the model itself)
VARIANTS=(
  "F16|$MODEL|"
  "Q8_0|$OUT/q8_0.gguf|quantize $MODEL $OUT/q8_0.gguf --type q8_0"
  "Q6_K|$OUT/q6_k.gguf|quantize $MODEL $OUT/q6_k.gguf --type q6_K"
  "Q5_K_M|$OUT/q5_k_m.gguf|quantize $MODEL $OUT/q5_k_m.gguf --type q5_K_m"
  "Q4_K_M|$OUT/q4_k_m.gguf|quantize $MODEL $OUT/q4_k_m.gguf --type q4_K_m"
  "Q4_K (RTN)|$OUT/q4_k.gguf|quantize $MODEL $OUT/q4_k.gguf --type q4_K"
  "Q4_K + imatrix|$OUT/q4_k_im.gguf|quantize $MODEL $OUT/q4_k_im.gguf --type q4_K --imatrix $OUT/imatrix.gguf"
  "Q4_K GPTQ|$OUT/q4_k_gptq.gguf|quantize $MODEL $OUT/q4_k_gptq.gguf --type q4_K --method gptq --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "Q4_K AWQ|$OUT/q4_k_awq.gguf|quantize $MODEL $OUT/q4_k_awq.gguf --type q4_K --method awq --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "Q4_0 (RTN)|$OUT/q4_0.gguf|quantize $MODEL $OUT/q4_0.gguf --type q4_0"
  "Q4_0 + imatrix|$OUT/q4_0_im.gguf|quantize $MODEL $OUT/q4_0_im.gguf --type q4_0 --imatrix $OUT/imatrix.gguf"
  "Q4_0 GPTQ|$OUT/q4_0_gptq.gguf|quantize $MODEL $OUT/q4_0_gptq.gguf --type q4_0 --method gptq --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "Q4_0 GPTQ act-order|$OUT/q4_0_gptq_ao.gguf|quantize $MODEL $OUT/q4_0_gptq_ao.gguf --type q4_0 --method gptq --act-order --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "Q4_0 AWQ|$OUT/q4_0_awq.gguf|quantize $MODEL $OUT/q4_0_awq.gguf --type q4_0 --method awq --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "50% magnitude|$OUT/p50_mag.gguf|prune $MODEL $OUT/p50_mag.gguf --method magnitude --sparsity 0.5"
  "50% Wanda|$OUT/p50_wanda.gguf|prune $MODEL $OUT/p50_wanda.gguf --method wanda --sparsity 0.5 --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "50% SparseGPT|$OUT/p50_sgpt.gguf|prune $MODEL $OUT/p50_sgpt.gguf --method sparsegpt --sparsity 0.5 --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "2:4 magnitude|$OUT/p24_mag.gguf|prune $MODEL $OUT/p24_mag.gguf --method magnitude --pattern 2:4"
  "2:4 Wanda|$OUT/p24_wanda.gguf|prune $MODEL $OUT/p24_wanda.gguf --method wanda --pattern 2:4 --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "2:4 SparseGPT|$OUT/p24_sgpt.gguf|prune $MODEL $OUT/p24_sgpt.gguf --method sparsegpt --pattern 2:4 --calib $OUT/calib.txt --calib-tokens $CALIB_TOKENS"
  "low-rank r128|$OUT/lr128.gguf|lowrank $MODEL $OUT/lr128.gguf --rank 128"
  "low-rank r64|$OUT/lr64.gguf|lowrank $MODEL $OUT/lr64.gguf --rank 64"
)

N_PARAMS=$("$BRISK" bench -m "$MODEL" -p 1 -n 1 -r 1 --warmup 0 -t 1 --bw-mib 16 --json 2>/dev/null |
  jq '.model.n_params')
ROWS=()
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r name file cmd <<< "$v"
  if [ -n "$cmd" ]; then
    log "$name: brisk $cmd"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$BRISK" $cmd -t "$T" >&2
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  else
    secs=0
  fi
  log "$name: perplexity and KL"
  "$BRISK" perplexity -m "$file" -f "$OUT/eval.txt" --ctx "$CTX" -t "$T" \
    --kl-base "$OUT/base.logits" --json > "$OUT/last.json"
  # One thread: on a model this small two threads mostly measure hand-off jitter.
  "$BRISK" bench -m "$file" -p 64 -n 64 -r 5 -t 1 --bw-mib 64 --json > "$OUT/last.bench.json" 2>/dev/null
  size=$(stat -c %s "$file")
  tg=$(jq '[.results[] | select(.test | startswith("tg"))][0].tokens_per_s.median' "$OUT/last.bench.json")
  ROWS+=("$(jq -r --arg name "$name" --argjson size "$size" --argjson np "$N_PARAMS" \
    --argjson tg "$tg" --argjson secs "$secs" \
    '"| \($name) | \($size / 1e6 * 100 | round / 100) | \($size * 8 / $np * 100 | round / 100) | \(.ppl * 1000 | round / 1000) ± \(.ppl_stderr * 100 | round / 100) | \(.kl.delta_ppl_pct * 100 | round / 100)% | \(.kl.mean * 100000 | round / 100000) | \(.kl.median * 100000 | round / 100000) | \(.kl.p99 * 10000 | round / 10000) | \(.kl.top1_agree * 10000 | round / 100)% | \($tg | round) | \($secs * 10 | round / 10) |"' \
    "$OUT/last.json")")
  echo "${ROWS[-1]}" >&2
done

{
  echo "# Compression: brisk's default model"
  echo
  echo "Generated by \`scripts/compression_table.sh\` (\`make compression-table\`) on $(date -u +%Y-%m-%d)"
  echo "with $T threads on: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
  echo
  echo "- Model: \`$MODEL\` ($N_PARAMS parameters, F16), llama, 6 layers, D 256, FFN 768, tied embeddings."
  echo "- Held-out text: the first $EVAL_BYTES bytes of the validation documents"
  echo "  ($(jq .tokens "$OUT/f16.ppl.json") tokens, $(jq .scored "$OUT/f16.ppl.json") scored, windows of $CTX)."
  echo "- Calibration (imatrix, GPTQ, AWQ, Wanda, SparseGPT): every $CALIB_STEP-th training document"
  echo "  (fortunes and dictionary entries in the corpus's proportions), the first $CALIB_TOKENS tokens,"
  echo "  in windows of the model's context (256)."
  echo "- KL: KL(F16 || variant) per scored position in nats; top-1: the variant's argmax equals F16's."
  echo "- bits/weight: file bytes x 8 / parameters (metadata and the tokenizer included)."
  echo "- tg: \`brisk bench -p 64 -n 64 -r 5 -t 1\`, median generated tokens/s (one thread: on a model this"
  echo "  small, two threads mostly measure hand-off jitter)."
  echo "- time: seconds to produce the file (calibration included)."
  echo
  echo "| variant | MB | bits/weight | perplexity | Δ ppl | KL mean | KL median | KL p99 | top-1 | tg tok/s | time s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} > "$DOC.tmp"
if [ -f docs/COMPRESSION.notes.md ]; then
  { echo; cat docs/COMPRESSION.notes.md; } >> "$DOC.tmp"
fi
mv "$DOC.tmp" "$DOC"
log "wrote $DOC"
