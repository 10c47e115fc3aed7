#!/usr/bin/env bash
# Rebuilds models/tiny-default from nothing and re-measures it (see README.md here).
#   scripts/train-default-model/build.sh [work-dir]      (default work dir: /tmp/glm-default-model)
# Steps are skipped when their output exists, so an interrupted run continues where it stopped
# (training itself resumes from its last checkpoint).
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${1:-/tmp/glm-default-model}"
S=scripts/train-default-model
R=$S/results
PY=/usr/bin/python3
mkdir -p "$W" "$R"

# Phase 1: the general mixture; the tokenizer is learned from this corpus.
[ -f "$W/corpus/train.jsonl" ] || node $S/corpus.mjs "$W/corpus" --conversations 30000 --seed 1
[ -f "$W/tokenizer/tokenizer.json" ] || node $S/bpe.mjs "$W/corpus" "$W/tokenizer" --vocab 1024
[ -f "$W/corpus/tokens.u16" ] || node $S/encode.mjs "$W/corpus" "$W/tokenizer"
# A 720-step schedule cut at step 350 (the committed model was trained this way: phase 1 was stopped
# there once it was clear that more steps and more arithmetic and tool data were needed).
[ -f "$W/run1/summary.json" ] || nice -n 10 $PY $S/train.py "$W/corpus" "$W/tokenizer" "$W/run1" --steps 720 --stop-after 350 --warmup 40 --save-every 25
# Phase 2: a fresh corpus (another seed) with more arithmetic and tool conversations, same tokenizer;
# a 900-step schedule cut at step 150 (stopped when phase 3's data change was made).
[ -f "$W/corpus2/train.jsonl" ] || node $S/corpus.mjs "$W/corpus2" --conversations 30000 --seed 2 --mixture arithmetic=45,tool=25,facts=10,string=12,chat=8
[ -f "$W/corpus2/tokens.u16" ] || node $S/encode.mjs "$W/corpus2" "$W/tokenizer"
[ -f "$W/run2/summary.json" ] || nice -n 10 $PY $S/train.py "$W/corpus2" "$W/tokenizer" "$W/run2" --init-from "$W/run1/ckpt.pt" --steps 900 --stop-after 150 --lr 1e-3 --warmup 20 --seed 2 --save-every 25
# Phase 3: half of the names, cities, pets and words made up, so that copying them is learned rather
# than a list memorised (held-out names are never seen); the rest as phase 2.
[ -f "$W/corpus3/train.jsonl" ] || node $S/corpus.mjs "$W/corpus3" --conversations 30000 --seed 3 --mixture arithmetic=45,tool=22,facts=12,string=13,chat=8 --synthetic-names 0.5
[ -f "$W/corpus3/tokens.u16" ] || node $S/encode.mjs "$W/corpus3" "$W/tokenizer"
[ -f "$W/run3/summary.json" ] || nice -n 10 $PY $S/train.py "$W/corpus3" "$W/tokenizer" "$W/run3" --init-from "$W/run2/ckpt.pt" --steps 800 --lr 1e-3 --warmup 20 --seed 3 --save-every 25
# Phase 4: copying. Made-up names in more shapes (syllables, splices of two real names, consonant
# clusters) for 70% of names, and 35% of tool requests for a made-up city attribute tool, so that
# argument values and tool names are copied from the context rather than recalled.
[ -f "$W/corpus4/train.jsonl" ] || node $S/corpus.mjs "$W/corpus4" --conversations 32000 --seed 4 --mixture arithmetic=36,tool=32,facts=12,string=12,chat=8 --synthetic-names 0.7 --synthetic-style mixed --synthetic-tools 0.35
[ -f "$W/corpus4/tokens.u16" ] || node $S/encode.mjs "$W/corpus4" "$W/tokenizer"
[ -f "$W/run4/summary.json" ] || nice -n 10 $PY $S/train.py "$W/corpus4" "$W/tokenizer" "$W/run4" --init-from "$W/run3/ckpt.pt" --steps 840 --lr 6e-4 --warmup 20 --seed 4 --save-every 20
# Phase 5: more of phase 4 at a lower learning rate, with a little more tool data.
[ -f "$W/corpus5/train.jsonl" ] || node $S/corpus.mjs "$W/corpus5" --conversations 24000 --seed 6 --mixture arithmetic=36,tool=36,facts=10,string=10,chat=8 --synthetic-names 0.7 --synthetic-style mixed --synthetic-tools 0.35
[ -f "$W/corpus5/tokens.u16" ] || node $S/encode.mjs "$W/corpus5" "$W/tokenizer"
[ -f "$W/run5/summary.json" ] || nice -n 10 $PY $S/train.py "$W/corpus5" "$W/tokenizer" "$W/run5" --init-from "$W/run4/ckpt.pt" --steps 480 --lr 3e-4 --warmup 20 --seed 6 --save-every 20
$PY $S/export.py "$W/run5/ckpt.pt" "$W/tokenizer" models/tiny-default
cp "$W/run5/summary.json" $R/train-summary.json
cat "$W/run1/log.jsonl" "$W/run2/log.jsonl" "$W/run3/log.jsonl" "$W/run4/log.jsonl" "$W/run5/log.jsonl" > $R/train-log.jsonl
node $S/check-export.mjs models/tiny-default --out $R/export-check.json
node $S/evaluate.mjs models/tiny-default "$W/corpus/eval.jsonl" --json $R/eval.json | tee $R/eval-table.md
node $S/mtp-eval.mjs models/tiny-default "$W/corpus/eval.jsonl" --limit 100 --json $R/mtp.json
for q in fp8 mxfp4; do node dist/lib/cli.js quantize models/tiny-default "$W/tiny-default-$q" --to $q > /dev/null; done
node $S/perplexity.mjs "$W/corpus/eval.jsonl" models/tiny-default "$W/tiny-default-fp8" "$W/tiny-default-mxfp4" --json $R/perplexity.json
