#!/bin/sh
# Regenerates everything of the shipped VQA checkpoints, from the repository root:
#   sh models/reference/train_vqa.sh            (see models/reference/TRAINING.md)
# (the original 48 x 48 task; the widened task of issue 18 is train_vqa_wide.sh)
# Data and tokenizer are deterministic; the two training runs go in parallel, one thread each, logs and float32
# checkpoints under $WORK (outside the repository); then float16 export, PyTorch evaluation and the logits golden.
set -eu
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-/tmp/lavi-train}
STEPS=${STEPS:-4000}
mkdir -p "$WORK"

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

$PY $R/train_vqa.py export --run-dir "$WORK/lavi" --tokenizer "$WORK/tokenizer.json" --out models/weights/lavi-vqa
$PY $R/train_vqa.py export --run-dir "$WORK/concat" --tokenizer "$WORK/tokenizer.json" --out models/weights/concat-vqa
$PY $R/eval_vqa.py eval models/weights/lavi-vqa models/weights/concat-vqa
$PY $R/eval_vqa.py golden
