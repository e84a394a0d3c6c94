#!/usr/bin/env bash
# End-to-end checks of `brisk train`, `brisk distill` and `brisk bench-train`: help, bad configs
# (exit 2, one "error:" line), and a small pipeline: tokenizer -> shards -> pretrain -> run the
# exported GGUF -> resume -> LoRA fine-tune -> run with the adapter -> merge -> distill.
# usage: train.sh BRISK [TESTDATA] [TESTS_DATA_DIR]
set -u
BRISK=$1
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

for c in "train" "distill" "bench-train"; do
  # shellcheck disable=SC2086
  expect 0 "$c --help" -- "$BRISK" $c --help
done

# A small English-like corpus.
for i in $(seq 1 300); do
  echo "The cat sat on the mat number $i. A dog ran to the park and the bird sang a song."
  echo "Every morning the sun rises over the hills, and the river runs down to the sea."
  echo
done >"$TMP/corpus.txt"
expect 0 "tokenizer train" -- "$BRISK" tokenizer train -i "$TMP/corpus.txt" --vocab-size 320 -o "$TMP/vocab.gguf"
expect 0 "data prepare" -- "$BRISK" data prepare --tokenizer "$TMP/vocab.gguf" -i "$TMP/corpus.txt" -o "$TMP/data" --val-fraction 0.1

cat >"$TMP/pre.conf" <<CONF
[model]
dim = 64
layers = 2
heads = 4
kv_heads = 2
ffn = 128
context = 64
[data]
tokenizer = $TMP/vocab.gguf
train = $TMP/data.train.bin
val = $TMP/data.val.bin
seq_len = 32
batch_size = 4
[optim]
lr = 3e-3
warmup = 5
[train]
steps = 40
threads = 2
log_interval = 10
eval_interval = 20
eval_batches = 2
checkpoint_interval = 20
out = $TMP/run
CONF
expect 0 "train 40 steps" -- "$BRISK" train --config "$TMP/pre.conf" --json
[ -f "$TMP/run/model.gguf" ] && [ -f "$TMP/run/checkpoint.bin" ] && [ -f "$TMP/run/log.jsonl" ] \
  && ok || bad "train outputs missing"
first=$(grep '"loss"' "$TMP/run/log.jsonl" | head -1 | sed 's/.*"loss":\([0-9.]*\).*/\1/')
last=$(grep '"loss"' "$TMP/run/log.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.7) }' && ok || bad "loss did not fall: $first -> $last"
grep -q '"val_loss"' "$TMP/run/log.jsonl" && ok || bad "no validation loss logged"
expect 0 "run the exported model" -- "$BRISK" run -m "$TMP/run/model.gguf" -p "The cat" -n 8 --seed 1
expect 0 "perplexity of the trained model" -- "$BRISK" perplexity -m "$TMP/run/model.gguf" -f "$TMP/corpus.txt" --ctx 32 --json
grep -q '"ppl"' "$TMP/out" && ok || bad "perplexity --json has no ppl"
expect 2 "perplexity bad stride" -- "$BRISK" perplexity -m "$TMP/run/model.gguf" -f "$TMP/corpus.txt" --stride 0
# Resume: 40 more steps from the checkpoint, the log continues.
expect 0 "resume" -- "$BRISK" train --config "$TMP/pre.conf" --resume --steps 60
grep -q '"step":60' "$TMP/run/log.jsonl" && ok || bad "resume did not reach step 60"

# LoRA on the pretrained model, QLoRA base in q8_0, then run with the adapter and merge it.
sed -e "s|^dim = 64|init = $TMP/run/model.gguf|" -e '/^layers\|^heads\|^kv_heads\|^ffn\|^context/d' \
  -e "s|out = $TMP/run|out = $TMP/lora|" -e 's/^steps = 40/steps = 20/' "$TMP/pre.conf" >"$TMP/lora.conf"
printf '[lora]\nrank = 4\nalpha = 8\ntargets = all\nbase_type = q8_0\n' >>"$TMP/lora.conf"
expect 0 "qlora fine-tune" -- "$BRISK" train --config "$TMP/lora.conf"
[ -f "$TMP/lora/adapter.gguf" ] && ok || bad "no adapter written"
expect 0 "run with the adapter" -- "$BRISK" run -m "$TMP/run/model.gguf" --lora "$TMP/lora/adapter.gguf" -p "The cat" -n 8 --seed 1
expect 0 "merge the adapter" -- "$BRISK" lora merge -m "$TMP/run/model.gguf" --lora "$TMP/lora/adapter.gguf" -o "$TMP/merged.gguf"

# Distillation: a smaller student from the pretrained teacher.
sed -e 's/^dim = 64/dim = 32/' -e 's/^layers = 2/layers = 1/' -e "s|out = $TMP/run|out = $TMP/student|" \
  -e 's/^steps = 40/steps = 10/' "$TMP/pre.conf" >"$TMP/student.conf"
expect 0 "distill" -- "$BRISK" distill --teacher "$TMP/run/model.gguf" --student "$TMP/student.conf" --alpha 0.5 --tau 2
[ -f "$TMP/student/model.gguf" ] && ok || bad "no student written"

# Bad configs: one clear error each.
printf '[model]\ndim = 64\n[data]\ntrain = %s\n[train]\nstepz = 3\n' "$TMP/data.train.bin" >"$TMP/typo.conf"
expect 2 "unknown key" -- "$BRISK" train --config "$TMP/typo.conf"
printf '[modl]\n' >"$TMP/sec.conf"
expect 2 "unknown section" -- "$BRISK" train --config "$TMP/sec.conf"
sed 's/^lr = 3e-3/lr = fast/' "$TMP/pre.conf" >"$TMP/lr.conf"
expect 2 "non-numeric lr" -- "$BRISK" train --config "$TMP/lr.conf"
sed 's/^heads = 4/heads = 5/' "$TMP/pre.conf" >"$TMP/heads.conf"
expect 2 "impossible shape" -- "$BRISK" train --config "$TMP/heads.conf"
expect 2 "missing config" -- "$BRISK" train --config "$TMP/nope.conf"
head -c 1000 "$TMP/run/checkpoint.bin" >"$TMP/run/ck.bin" && mv "$TMP/run/ck.bin" "$TMP/run/checkpoint.bin"
expect 2 "truncated checkpoint" -- "$BRISK" train --config "$TMP/pre.conf" --resume
expect 2 "bench-train bad preset" -- "$BRISK" bench-train --preset huge

finish train.sh
