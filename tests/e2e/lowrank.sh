#!/usr/bin/env bash
# End-to-end checks of `brisk lowrank`: help, bad usage and bad input (exit 2, one "error:"
# line), factorising the default model at rank 64 and running the result, --json with an energy
# target, rank 128 keeping the square matrices dense. (Malformed factor pairs: test_lowrank.cpp.)
# usage: lowrank.sh BRISK [TESTDATA TESTS_DATA_DIR]
set -u
BRISK=$1
MODEL=$(cd "$(dirname "$0")/../.." && pwd)/models/brisk-default.gguf
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

if [ ! -f "$MODEL" ]; then
  echo "FAIL: $MODEL missing"
  exit 1
fi

expect 0 "lowrank --help" -- "$BRISK" lowrank --help
grep -q -- "--energy" "$TMP/out" || bad "lowrank --help does not list --energy"
expect 2 "no rank or energy" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf"
expect 2 "both rank and energy" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --rank 8 --energy 0.9
expect 2 "energy out of range" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --energy 1.5
expect 2 "bad layers" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --rank 8 --layers 1-x
expect 2 "layer out of range" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --rank 8 --layers 0-99
expect 2 "unknown tensor" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --rank 8 --tensors attn_q,foo
expect 2 "bad type" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --rank 8 --type q4_0
expect 2 "missing input" -- "$BRISK" lowrank "$TMP/nope.gguf" "$TMP/x.gguf" --rank 8
[ -e "$TMP/x.gguf" ] && bad "a failed lowrank left an output file"

# The default model at rank 64 (every matrix smaller), then generation from it.
expect 0 "lowrank rank 64" -- "$BRISK" lowrank "$MODEL" "$TMP/x.gguf" --rank 64 -t 2
grep -q "42 of 42 matrices factorised" "$TMP/err" || bad "rank 64 summary: $(tail -3 "$TMP/err")"
[ "$(stat -c %s "$TMP/x.gguf")" -lt "$(stat -c %s "$MODEL")" ] || bad "rank 64 file not smaller"
expect 0 "run factorised" -- "$BRISK" run -m "$TMP/x.gguf" -p hi -n 4 --seed 1
[ -s "$TMP/out" ] || bad "run on the factorised model printed nothing"

# --json, an energy target on some layers and tensors; rank 128 keeps the square matrices dense.
expect 0 "lowrank --json" -- "$BRISK" lowrank "$MODEL" "$TMP/e.gguf" --energy 0.9 --layers 0-1,5 \
  --tensors ffn_up,ffn_down --type f32 --json --quiet -t 2
grep -q '"factorised":' "$TMP/out" && grep -q '"selected":6' "$TMP/out" ||
  bad "lowrank --json output: $(head -c 300 "$TMP/out")"
expect 0 "lowrank rank 128" -- "$BRISK" lowrank "$MODEL" "$TMP/r.gguf" --rank 128 -t 2
grep -q "kept dense: factors would not be smaller" "$TMP/err" || bad "rank 128 did not keep any dense"
expect 0 "logits factorised" -- "$BRISK" logits -m "$TMP/r.gguf" -p "hello there" -o "$TMP/l.bin"

# Running it again on the factorised file: nothing left to factorise.
expect 2 "already factorised" -- "$BRISK" lowrank "$TMP/x.gguf" "$TMP/y.gguf" --rank 8

finish lowrank.sh
