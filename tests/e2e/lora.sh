#!/usr/bin/env bash
# End-to-end checks of LoRA adapters in the CLI: `brisk lora merge` and `--lora` on run / logits /
# bench, on a synthetic model; the adapter is written by the unit-test binary next to brisk
# (LoraFile.WritesAnAdapterForTheCliTest), since brisk itself has no command that makes one.
# usage: lora.sh BRISK [TESTDATA TESTS_DATA_DIR]
set -u
BRISK=$1
TESTS=$(dirname "$BRISK")/tests/brisk_tests
STRICT_STDERR=1
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

# Largest |a - b| over largest |b| of two raw f32 files.
max_rel_diff() {
  paste <(od -An -v -f -w4 "$1") <(od -An -v -f -w4 "$2") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; b = $2; if (b < 0) b = -b;
           if (d > e) e = d; if (b > s) s = b } END { printf "%.3g\n", e / s }'
}

if [ ! -x "$TESTS" ]; then
  echo "FAIL: $TESTS not built (it writes the test adapter)"
  exit 1
fi

expect 0 "lora --help" -- "$BRISK" lora --help
expect 0 "lora merge --help" -- "$BRISK" lora merge --help
grep -q -- "--type" "$TMP/out" || bad "lora merge --help does not list --type"
expect 2 "lora without subcommand" -- "$BRISK" lora

# A small f32 model and a rank-4 adapter on all its matrices (and output.weight).
expect 0 "synth f32" -- "$BRISK" synth --preset tiny --type f32 -o "$TMP/m.gguf" -t 2
expect 0 "synth q8_0" -- "$BRISK" synth --preset tiny --type q8_0 -o "$TMP/m8.gguf" -t 2
expect 0 "synth other shape" -- "$BRISK" synth --dim 128 --layers 4 --heads 4 --kv-heads 2 --ffn 256 --type f32 -o "$TMP/o.gguf" -t 2
BRISK_LORA_BASE="$TMP/m.gguf" BRISK_LORA_OUT="$TMP/a.gguf" \
  "$TESTS" --gtest_filter=LoraFile.WritesAnAdapterForTheCliTest >"$TMP/gt.out" 2>&1 ||
  bad "writing the adapter failed: $(tail -5 "$TMP/gt.out")"

# merge, then: logits of the merged model = logits with the adapter applied unmerged.
expect 0 "merge f32" -- "$BRISK" lora merge -m "$TMP/m.gguf" --lora "$TMP/a.gguf" -o "$TMP/merged.gguf" --type f32 -t 2
grep -q "matrices merged" "$TMP/err" || bad "merge printed no summary: $(cat "$TMP/err")"
TOKS="1 20 30 40 50 60 70"
expect 0 "logits base" -- "$BRISK" logits -m "$TMP/m.gguf" --tokens "$TOKS" -o "$TMP/base.f32" -t 2
expect 0 "logits --lora" -- "$BRISK" logits -m "$TMP/m.gguf" --lora "$TMP/a.gguf" --tokens "$TOKS" -o "$TMP/lora.f32" -t 2
grep -q "^lora: " "$TMP/err" || bad "logits --lora did not report the adapter"
expect 0 "logits merged" -- "$BRISK" logits -m "$TMP/merged.gguf" --tokens "$TOKS" -o "$TMP/merged.f32" -t 2
d=$(max_rel_diff "$TMP/lora.f32" "$TMP/merged.f32")
awk -v d="$d" 'BEGIN { exit !(d < 1e-4) }' || bad "unmerged vs merged logits differ by $d"
d=$(max_rel_diff "$TMP/lora.f32" "$TMP/base.f32")
awk -v d="$d" 'BEGIN { exit !(d > 1e-2) }' || bad "the adapter changed the logits by only $d"
expect 0 "logits --lora-scale 0" -- "$BRISK" logits -m "$TMP/m.gguf" --lora "$TMP/a.gguf" --lora-scale 0 --tokens "$TOKS" -o "$TMP/zero.f32" -t 2
cmp -s "$TMP/zero.f32" "$TMP/base.f32" || bad "--lora-scale 0 changed the logits"

# run with the adapter (stacked twice at half scale = once at full scale, up to rounding).
expect 0 "run --lora" -- "$BRISK" run -m "$TMP/m.gguf" --lora "$TMP/a.gguf" -p "Hello" -n 6 --temp 0 -t 2
grep -q "generation:" "$TMP/err" || bad "run --lora printed no speed line"
expect 0 "run two --lora" -- "$BRISK" run -m "$TMP/m.gguf" --lora "$TMP/a.gguf" --lora "$TMP/a.gguf" --lora-scale 0.5 -p "Hello" -n 6 --temp 0 -t 2
expect 0 "run merged" -- "$BRISK" run -m "$TMP/merged.gguf" -p "Hello" -n 6 --temp 0 -t 2

# keep: the q8_0 base's merged matrices stay q8_0.
expect 0 "merge keep" -- "$BRISK" lora merge -m "$TMP/m8.gguf" --lora "$TMP/a.gguf" -o "$TMP/merged8.gguf" --json -t 2
grep -q '"merged_matrices":29' "$TMP/out" || bad "merge --json: $(cat "$TMP/out")"
expect 0 "inspect merged keep" -- "$BRISK" inspect --json "$TMP/merged8.gguf"
grep -q '"f32"' "$TMP/out" && grep -q 'blk.0.attn_q.weight' "$TMP/out" || bad "inspect of the merged file failed"
expect 0 "run merged keep" -- "$BRISK" run -m "$TMP/merged8.gguf" -p "Hello" -n 4 --temp 0 -t 2
expect 0 "bench --lora" -- "$BRISK" bench -m "$TMP/m8.gguf" --lora "$TMP/a.gguf" -p 8 -n 4 -r 1 --warmup 0 -t 2 --bw-mib 8 --json
grep -q '"lora"' "$TMP/out" || bad "bench --json does not record the adapter"

# bad input: one line, exit 2, nothing written
expect 2 "merge without --lora" -- "$BRISK" lora merge -m "$TMP/m.gguf" -o "$TMP/x.gguf"
expect 2 "merge a model as adapter" -- "$BRISK" lora merge -m "$TMP/m.gguf" --lora "$TMP/m.gguf" -o "$TMP/x.gguf"
grep -q "not a LoRA adapter" "$TMP/err" || bad "model-as-adapter error does not say why"
expect 2 "merge bad type" -- "$BRISK" lora merge -m "$TMP/m.gguf" --lora "$TMP/a.gguf" -o "$TMP/x.gguf" --type q4_0
expect 2 "merge wrong base" -- "$BRISK" lora merge -m "$TMP/o.gguf" --lora "$TMP/a.gguf" -o "$TMP/x.gguf"
grep -q "shape" "$TMP/err" || bad "wrong-base error does not name the shape"
expect 2 "run wrong base" -- "$BRISK" run -m "$TMP/o.gguf" --lora "$TMP/a.gguf" -p hi -n 1
expect 2 "run missing adapter" -- "$BRISK" run -m "$TMP/m.gguf" --lora "$TMP/nope.gguf" -p hi -n 1
expect 2 "too many scales" -- "$BRISK" run -m "$TMP/m.gguf" --lora "$TMP/a.gguf" --lora-scale 1 --lora-scale 2 -p hi -n 1
expect 2 "scale without adapter" -- "$BRISK" run -m "$TMP/m.gguf" --lora-scale 2 -p hi -n 1
expect 2 "adapter as model" -- "$BRISK" run -m "$TMP/a.gguf" -p hi -n 1
grep -q "LoRA adapter, not a model" "$TMP/err" || bad "adapter-as-model error does not say why"
expect 2 "merge into an adapter" -- "$BRISK" lora merge -m "$TMP/a.gguf" --lora "$TMP/a.gguf" -o "$TMP/x.gguf"
expect 0 "inspect adapter" -- "$BRISK" inspect "$TMP/a.gguf"
grep -q "^adapter: *lora, alpha 8" "$TMP/out" || bad "inspect does not describe the adapter: $(head -5 "$TMP/out")"
[ -e "$TMP/x.gguf" ] && bad "a failed merge left an output file"

finish lora.sh
