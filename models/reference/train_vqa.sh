#!/bin/sh
# The original 48 x 48 task's checkpoints (shipped until issue 18; the shipped ones now come from
# train_vqa_wide.sh), from the repository root:
#   sh models/reference/train_vqa.sh            (see models/reference/TRAINING.md)
# Data and tokenizer are deterministic; the two training runs go in parallel, one thread each, logs and float32
# checkpoints under $WORK (outside the repository); then float16 export to $OUT (default $WORK/export; OUT=models/weights
# would replace the shipped ones) and the PyTorch evaluation.
set -eu
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-/tmp/lavi-train}
STEPS=${STEPS:-4000}
OUT=${OUT:-$WORK/export}
mkdir -p "$WORK" "$OUT"

# OpenBLAS from Debian's package for PyTorch's matmuls (models/reference/openblas-env.sh; OPENBLAS_DIR= skips it).
. models/reference/openblas-env.sh

R=models/reference
$PY $R/vqa_data.py write-test
$PY $R/vqa_data.py write-shifted
$PY $R/vqa_data.py write-oot
$PY $R/vqa_data.py write-examples
$PY $R/bpe_tokenizer.py train --data fixed --out "$WORK/tokenizer.json"

. models/reference/recipe-vqa.sh
for m in lavi concat; do
  rm -rf "$WORK/$m"
  # shellcheck disable=SC2086
  nice -n 5 $PY $R/train_vqa.py train --mode $m --run-dir "$WORK/$m" $VQA_FLAGS > "$WORK/$m.log" 2>&1 &
done
wait

$PY $R/train_vqa.py export --run-dir "$WORK/lavi" --tokenizer "$WORK/tokenizer.json" --out "$OUT/lavi-vqa"
$PY $R/train_vqa.py export --run-dir "$WORK/concat" --tokenizer "$WORK/tokenizer.json" --out "$OUT/concat-vqa"
$PY $R/eval_vqa.py eval "$OUT/lavi-vqa" "$OUT/concat-vqa" --out-dir "$OUT"
