#!/bin/sh
# The conditioner-design ablation of the efficiency issue (models/COST.md, "Ablation"), from the repository root:
#   sh models/reference/ablate_conditioner.sh [NAME ...]
# Retrains the small LaVi of the original task (train_vqa.sh's recipe: same data stream, seed, tokenizer and
# 4,000-step schedule) once per candidate design, two at a time (one thread each, nice 10), exports each to float16
# and scores it in PyTorch on the original held-out split (examples/vqa/test, 252 questions). The paper design is
# train_vqa.sh's own LaVi (the checkpoint shipped until issue 18, 98.4% on that split). Results: $WORK/<name>/eval/.
set -eu
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-/tmp/lavi-ablate}
STEPS=${STEPS:-4000}
mkdir -p "$WORK"
. models/reference/openblas-env.sh
R=models/reference

design() {  # the lavi_config flags of each candidate
  case "$1" in
    decode) echo "--shared-kv --kv-dtype bf16 --every-k 2 --viln-norms input_layernorm" ;;   # 2 of 8 sites, one K/U
    decode-r32) echo "--shared-kv --kv-dtype bf16 --every-k 2 --viln-norms input_layernorm --cond-r 32" ;;  # half r
    shared) echo "--shared-kv --kv-dtype bf16" ;;                                             # all 8 sites, one K/U
    shared-r16) echo "--shared-kv --kv-dtype bf16 --cond-r 16 --cond-heads 2" ;;  # all sites, one K/U, r = d/12, head dim 8 (as width 64 at 0.5B)
    shared-r16-input) echo "--shared-kv --kv-dtype bf16 --cond-r 16 --cond-heads 2 --viln-norms input_layernorm" ;;  # half the sites (4 / 24 at 0.5B)
    shared-r8) echo "--shared-kv --kv-dtype bf16 --cond-r 8 --cond-heads 1" ;;  # all sites, one K/U, r = d/24, one head of 8 (r 32, 4 heads at 0.5B)
    shared-r16-every2) echo "--shared-kv --kv-dtype bf16 --cond-r 16 --cond-heads 2 --every-k 2" ;;  # both norms of every other layer (24 of 48 sites at 0.5B)
    shared-r16-scale) echo "--shared-kv --kv-dtype bf16 --cond-r 16 --cond-heads 2 --modulate scale" ;;  # shared-r16, only gamma modulated (o_proj half as tall)
    shared-r16-perlayer) echo "--shared-kv --kv-dtype bf16 --cond-r 16 --cond-heads 2 --per-layer" ;;  # shared-r16, one conditioner per layer for both norms (query from the layer input)
    shared-r16-shift) echo "--shared-kv --kv-dtype bf16 --cond-r 16 --cond-heads 2 --modulate shift" ;;  # shared-r16, only beta modulated
    every2) echo "--every-k 2" ;;                                                             # 4 sites, own K/U
    input) echo "--viln-norms input_layernorm" ;;                                             # 4 sites, own K/U
    *) echo "unknown design $1" >&2; exit 2 ;;
  esac
}
[ $# -gt 0 ] || set -- decode shared

$PY $R/bpe_tokenizer.py train --data fixed --out "$WORK/tokenizer.json"
. models/reference/recipe-vqa.sh
run() {
  name=$1
  rm -rf "${WORK:?}/$name"
  # shellcheck disable=SC2086
  nice -n "${NICE:-10}" $PY $R/train_vqa.py train --mode lavi --run-dir "$WORK/$name/run" $VQA_FLAGS $(design "$name") \
    > "$WORK/$name.log" 2>&1
  $PY $R/train_vqa.py export --run-dir "$WORK/$name/run" --tokenizer "$WORK/tokenizer.json" --out "$WORK/$name/model"
  $PY $R/eval_vqa.py eval "$WORK/$name/model" --sets test --out-dir "$WORK/$name/eval" --threads 1
}
while [ $# -gt 0 ]; do
  run "$1" &
  if [ $# -gt 1 ]; then run "$2" & shift; fi
  shift
  wait
done
