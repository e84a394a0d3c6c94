#!/usr/bin/env bash
# Trains brisk's embedded default model from scratch (`make default-model`): a byte-level BPE
# vocabulary and token shards from English text in Debian packages (fortunes, dict-gcide), then
# `brisk train --config configs/default.conf`, then copies the F16 GGUF to models/.
# Usage: scripts/train_default.sh [BRISK_BINARY]   (RESUME=1 continues an interrupted run)
set -euo pipefail
cd "$(dirname "$0")/.."
BRISK=${1:-build/brisk}
OUT=build/default
mkdir -p "$OUT" models
INPUTS=(fortune:/usr/share/games/fortunes gcide:/usr/share/dictd/gcide.dict.dz)
if [ ! -f "$OUT/vocab.gguf" ]; then
  "$BRISK" tokenizer train -i "${INPUTS[@]}" --vocab-size 8192 -o "$OUT/vocab.gguf" \
    --tokenizer-json "$OUT/tokenizer.json"
fi
if [ ! -f "$OUT/data.train.bin" ]; then
  "$BRISK" data prepare --tokenizer "$OUT/vocab.gguf" -i "${INPUTS[@]}" -o "$OUT/data" \
    --val-fraction 0.01 --seed 0
fi
if [ "${RESUME:-0}" = 1 ]; then
  "$BRISK" train --config configs/default.conf --resume
else
  "$BRISK" train --config configs/default.conf
fi
cp "$OUT/run/model.gguf" models/brisk-default.gguf
echo "wrote models/brisk-default.gguf"
