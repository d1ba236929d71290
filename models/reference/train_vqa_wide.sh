#!/bin/sh
# The widened VQA task of issue 18 (models/reference/TRAINING.md, "The widened task"), from the repository root:
#   sh models/reference/train_vqa_wide.sh
# Writes the shipped checkpoints to $OUT (default models/weights; OUT=$WORK/export keeps them out of the repository),
# with their PyTorch evaluation on the three held-out sets and, when OUT=models/weights, the logits goldens.
# Data and tokenizer are deterministic; the tower is pretrained first, then the two training runs go in parallel, one
# thread each, nice 10.
set -eu
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-/tmp/lavi-train-wide}
OUT=${OUT:-models/weights}
STEPS=${STEPS:-3600}   # of the VQA training (the run in TRAINING.md)
VSTEPS=${VSTEPS:-12000} # of the vision tower's pretraining on the cell probes (one thread: the shipped tower's)
TOWER=${TOWER:-}       # a tower.pt pretrained already (vision_probe.py --save) instead of step 1
P2STEPS=${P2STEPS:-2000} # a second phase from the last checkpoint: fresh AdamW, lr 1e-3, the stream's next pictures
RESAMPLE=${RESAMPLE:-}   # a PIL filter number (3: bicubic) for the resize to the input (vision_config.resample); empty: the engine's bilinear, what the shipped weights trained on (exported with EXPORT_RESAMPLE for inference, below)
SMALL=${SMALL:-}         # share of training pictures 24..47 px on the long side (--small-pictures); empty: none extra
RS="${RESAMPLE:+--resample $RESAMPLE} ${SMALL:+--small-pictures $SMALL}"
# The resize the exported checkpoints ask inference for (vision_config.resample): the shipped ones trained on the
# engine's bilinear and answer better through Pillow's bicubic (3; TRAINING.md, fourth run); RESAMPLE, when set, wins.
EXPORT_RESAMPLE=${EXPORT_RESAMPLE:-${RESAMPLE:-3}}
mkdir -p "$WORK" "$OUT"

# OpenBLAS from Debian's package for PyTorch's matmuls (models/reference/openblas-env.sh; OPENBLAS_DIR= skips it).
. models/reference/openblas-env.sh

R=models/reference
$PY $R/vqa_data.py write-test
$PY $R/vqa_data.py write-shifted
$PY $R/vqa_data.py write-oot
$PY $R/vqa_data.py write-examples
$PY $R/bpe_tokenizer.py train --data wide --out "$WORK/tokenizer.json"

# 1. The vision tower (conv stem 32,64,128 + ViT width 128, 3 layers) and projector pretrained alone on the cell
#    probes (colour, shape, size, cell of each visual token): the stand-in for a pretrained SigLIP (TRAINING.md).
#    One thread, as the shipped checkpoints' tower was trained (BLAS sums, and so the weights, depend on the thread
#    count): about 27 minutes.
if [ -n "$TOWER" ]; then
  cp "$TOWER" "$WORK/tower.pt"
else
  nice -n 10 $PY $R/vision_probe.py --patch 16 --stem 32,64,128 --width 128 --steps "$VSTEPS" --cosine --eval-every 1000 --threads 1 $RS \
    --save "$WORK/tower.pt" > "$WORK/tower.log" 2>&1
fi

# 2. LaVi and concat from that tower, same seed, data and hyper-parameters, in parallel, one thread each.
COMMON="--tokenizer $WORK/tokenizer.json --seed 0 --images 48 --questions-per-image 2 --lr 2e-3 --patch 16
  --stem 32,64,128 --init-vision-from $WORK/tower.pt
  --vit-width 128 --vit-layers 3 --d 192 --ffn 512 --layers 4 --heads 4 --kv-heads 2 --cond-r 64 --cond-heads 4
  --o-proj-init 0.02 --aux-weight 0.5 --ref-weight 0.5 --threads 1 --data wide --type-weights 1,1,1.3,1,1,1,0.8
  --keep-checkpoints $RS"
for m in lavi concat; do
  rm -rf "$WORK/$m" "$WORK/$m-p2"
  # shellcheck disable=SC2086
  (nice -n 10 $PY $R/train_vqa.py train --mode $m --run-dir "$WORK/$m" $COMMON --steps "$STEPS" --warmup 150 \
      --eval-every 500 > "$WORK/$m.log" 2>&1 &&
   nice -n 10 $PY $R/train_vqa.py train --mode $m --run-dir "$WORK/$m-p2" $COMMON --lr 1e-3 --steps "$P2STEPS" \
      --warmup 30 --init-from "$WORK/$m/checkpoint.pt" --data-offset "$STEPS" --eval-every 500 > "$WORK/$m-p2.log" 2>&1) &
done
wait

for m in lavi concat; do
  $PY $R/train_vqa.py export --run-dir "$WORK/$m-p2" --tokenizer "$WORK/tokenizer.json" --out "$OUT/$m-vqa" --resample "$EXPORT_RESAMPLE"
done
$PY $R/eval_vqa.py eval "$OUT/lavi-vqa" "$OUT/concat-vqa" --out-dir "$OUT"
if [ "$OUT" = models/weights ]; then
  $PY $R/eval_vqa.py golden
  $PY $R/eval_vqa.py golden --model models/weights/concat-vqa --out test/fixtures/vqa/logits-golden-concat.safetensors
fi
