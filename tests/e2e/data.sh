#!/usr/bin/env bash
# End-to-end checks of `brisk tokenizer train` and `brisk data prepare / inspect`: help, bad
# usage and bad input (exit 2, one "error:" line), and the train -> prepare -> inspect flow on a
# small generated corpus.
# usage: data.sh BRISK [TESTDATA] [TESTS_DATA_DIR]
set -u
BRISK=$1
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

for c in "tokenizer" "tokenizer train" "data" "data prepare" "data inspect"; do
  # shellcheck disable=SC2086
  expect 0 "$c --help" -- "$BRISK" $c --help
done

# A small corpus: fortune-style entries and a chat file.
words=(the quick brown fox jumps over a lazy dog while rain falls on old roofs and green doors)
{
  for i in $(seq 1 300); do
    line=""
    for j in $(seq 1 $((5 + i % 11))); do line="$line ${words[$(((i * 7 + j * 13) % ${#words[@]}))]}"; done
    echo "Entry $i:$line."
    echo "%"
  done
} >"$TMP/corpus"
for i in $(seq 1 20); do
  echo '{"messages":[{"role":"user","content":"say '"$i"'"},{"role":"assistant","content":"the fox '"$i"'"}]}'
done >"$TMP/chat.jsonl"

expect 0 "tokenizer train" -- "$BRISK" tokenizer train -i "$TMP/corpus" --format fortune \
  --vocab-size 320 -o "$TMP/v.gguf" --tokenizer-json "$TMP/hf/tokenizer.json" --json
grep -q '"n_vocab": 320' "$TMP/out" || bad "tokenizer train --json: $(cat "$TMP/out")"
[ -s "$TMP/hf/tokenizer_config.json" ] || bad "no tokenizer_config.json beside tokenizer.json"
expect 0 "inspect vocab" -- "$BRISK" inspect --json "$TMP/v.gguf"
grep -q '"chat_template": "chatml"' "$TMP/out" || bad "vocab has no chatml template"
expect 0 "tokenize with the new vocab" -- "$BRISK" tokenize -m "$TMP/v.gguf" -p "the fox<|im_end|>"
[ "$(cut -d' ' -f1 "$TMP/out")" = 0 ] || bad "tokenize did not start with BOS 0: $(cat "$TMP/out")"
grep -q ' 2$' "$TMP/out" || bad "<|im_end|> is not the single id 2: $(cat "$TMP/out")"

expect 0 "data prepare" -- "$BRISK" data prepare --tokenizer "$TMP/v.gguf" -i "$TMP/corpus" \
  --format fortune -o "$TMP/d" --val-fraction 0.1 --seed 3 --json -t 2
grep -q '"docs": 300' "$TMP/out" || bad "data prepare --json: $(cat "$TMP/out")"
[ -s "$TMP/d.train.bin" ] && [ -s "$TMP/d.val.bin" ] || bad "shards missing"
expect 0 "data inspect" -- "$BRISK" data inspect "$TMP/d.train.bin" --json
grep -q '"has_mask": false' "$TMP/out" || bad "text shard has a mask"
expect 0 "data prepare chat" -- "$BRISK" data prepare --tokenizer "$TMP/v.gguf" \
  -i "$TMP/chat.jsonl" --format chat -o "$TMP/c" --val-fraction 0
expect 0 "data inspect chat" -- "$BRISK" data inspect "$TMP/c.train.bin" --tokenizer "$TMP/v.gguf" --show 1
grep -q "loss mask" "$TMP/out" || bad "chat shard has no mask: $(cat "$TMP/out")"
grep -q "<|im_start|>assistant" "$TMP/out" || bad "inspect --show did not decode: $(cat "$TMP/out")"

# bad usage and bad input
expect 2 "tokenizer without subcommand" -- "$BRISK" tokenizer
expect 2 "train missing input" -- "$BRISK" tokenizer train -i "$TMP/nope" -o "$TMP/x.gguf"
expect 2 "train tiny vocab" -- "$BRISK" tokenizer train -i "$TMP/corpus" --vocab-size 10 -o "$TMP/x.gguf"
expect 2 "train bad pre" -- "$BRISK" tokenizer train -i "$TMP/corpus" --pre nope -o "$TMP/x.gguf"
[ -e "$TMP/x.gguf" ] && bad "a failed train left an output file"
expect 2 "prepare bad tokenizer" -- "$BRISK" data prepare --tokenizer "$TMP/corpus" -i "$TMP/corpus" -o "$TMP/y"
expect 2 "prepare bad chat" -- "$BRISK" data prepare --tokenizer "$TMP/v.gguf" -i "$TMP/corpus" --format chat -o "$TMP/y"
expect 2 "prepare bad fraction" -- "$BRISK" data prepare --tokenizer "$TMP/v.gguf" -i "$TMP/corpus" --val-fraction 2 -o "$TMP/y"
head -c 100 "$TMP/d.train.bin" >"$TMP/cut.bin"
expect 2 "inspect truncated shard" -- "$BRISK" data inspect "$TMP/cut.bin"
expect 2 "inspect non-shard" -- "$BRISK" data inspect "$TMP/corpus"

finish data.sh
