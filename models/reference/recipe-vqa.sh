# Sourced by train_vqa.sh and ablate_conditioner.sh (needs $WORK and $STEPS): the original task's training flags,
# the recipe of the shipped checkpoints (models/reference/TRAINING.md, "Hyper-parameters"), written once.
VQA_FLAGS="--tokenizer $WORK/tokenizer.json --seed 0 --steps $STEPS --images 48 --questions-per-image 2 --warmup 150
  --lr 2e-3 --patch 16 --vit-width 128 --vit-layers 3 --d 192 --ffn 512 --layers 4 --heads 4 --kv-heads 2
  --cond-r 64 --cond-heads 4 --o-proj-init 0.02 --aux-weight 0.5 --ref-weight 0.5 --threads 1 --eval-every 500"
