#!/usr/bin/env bash
# GPU check of the Trainer recipes under accelerate (DDP, FSDP, DeepSpeed ZeRO-2 configs from
# examples/accelerate/) and of the sparse core (scripts/gpu/check_sparse_core.py), on one CUDA machine.
# Run from the repository root:
#   bash scripts/gpu/recipes_ddp_fsdp_deepspeed.sh [OUT_DIR] [PROMOTER_FOLDS_DIR] | tee scripts/gpu/results/recipes_ddp_fsdp_deepspeed_<gpu>.txt
# PROMOTER_FOLDS_DIR holds fold_1.csv/fold_2.csv of ../shared/data/epdnew_promoters_300 (optional:
# without it the full-fold run is skipped). With one GPU the configs run one process each: this
# checks that each launch path trains, evaluates and saves, not multi-GPU scaling.
set -uo pipefail
out=${1:-/tmp/recipes_ddp_fsdp_deepspeed}
folds=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, torch.cuda.get_device_name())"

step() { echo; echo "=== $1"; }
common=(--max_steps 40 --per_device_train_batch_size 32 --logging_steps 10 --report_to none --save_strategy no
        --eval_strategy no --bf16)

step "sparse core: executors agree on CUDA, speed vs transformers' BigBird"
timeout 240 python3 scripts/gpu/check_sparse_core.py --lengths 4096 16384 --repeats 3 2>&1 | grep -v Warning

step "longbird demo on the GPU (default arguments)"
timeout 240 python3 -m longbird.cli demo --output_dir "$out/demo" 2>&1 | grep -v "it/s\]\|Warning" | tail -25

for config in ddp fsdp deepspeed_zero2; do
  step "accelerate launch --config_file examples/accelerate/$config.yaml (1 process)"
  timeout 180 accelerate launch --config_file "examples/accelerate/$config.yaml" --num_processes 1 \
    -m longbird.tasks.sequence_classification "${common[@]}" \
    --train_file longbird/tasks/data/promoters_train.csv.gz --validation_file longbird/tasks/data/promoters_test.csv.gz \
    --text_column sequence --label_column promoter_presence --train_tokenizer dna --tokenizer_vocab_size 10 \
    --model_type longbird_bigbird --max_seq_length 512 --do_train --do_eval --output_dir "$out/$config" \
    --config_overrides "hidden_size=256,num_hidden_layers=4,num_attention_heads=4,intermediate_size=1024,block_size=16,max_position_embeddings=512" \
    2>&1 | grep -v "it/s\]\|Warning" | grep -i "loss\|eval_\|error\|Traceback\|distributed\|zero\|fsdp" | tail -12
  ls "$out/$config" 2>/dev/null | grep -c "safetensors\|README" | sed 's/^/saved files (weights+card): /'
done

if [ -n "$folds" ] && [ -f "$folds/fold_1.csv" ]; then
  for size in "hidden_size=128,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256" \
              "hidden_size=256,num_hidden_layers=4,num_attention_heads=4,intermediate_size=1024"; do
    step "promoters fold_1 -> fold_2, 5 epochs, $size"
    timeout 200 python3 -m longbird.tasks.sequence_classification --train_file "$folds/fold_1.csv" \
      --validation_file "$folds/fold_2.csv" --text_column sequence --label_column promoter_presence \
      --train_tokenizer dna --tokenizer_vocab_size 10 --model_type longbird_bigbird --max_seq_length 512 \
      --config_overrides "$size,block_size=16,num_random_blocks=2,max_position_embeddings=512" \
      --do_train --do_eval --output_dir "$out/folds" --num_train_epochs 5 --per_device_train_batch_size 32 \
      --learning_rate 1e-3 --warmup_steps 100 --weight_decay 0.01 --eval_strategy epoch --save_strategy no \
      --logging_steps 200 --report_to none --seed 0 2>&1 | grep -o "'eval_loss'.*'eval_auroc': '[0-9.]*'\|eval_accuracy *=.*"
  done
fi
