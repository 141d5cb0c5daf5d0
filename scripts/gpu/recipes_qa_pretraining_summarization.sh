#!/usr/bin/env bash
# GPU check of the recipes not run by recipes_ddp_fsdp_deepspeed.sh, under the accelerate configs: QA (ETC) with DDP, MLM pretraining
# (BigBird) with FSDP, summarization (BigBird-Pegasus) with DeepSpeed ZeRO-2; one process each.
# Needs the package and its dependencies installed (rouge-score for the summarization metric).
# Run from the repository root:
#   bash scripts/gpu/recipes_qa_pretraining_summarization.sh OUT DATA_DIR | tee scripts/gpu/results/recipes_qa_pretraining_summarization_<gpu>.txt
# DATA_DIR, from ../shared/data: xquad_en/xquad.en.json as is; scitldr_train.jsonl / scitldr_dev.jsonl =
# the first 300 / 40 lines of scitldr/SciTLDR-A.{train,dev}.jsonl; wiki_train.tokens / wiki_test.tokens =
# the first 3,000 / 400 lines of wikitext2_subset/wiki.{valid,test}.tokens.
set -uo pipefail
out=$1; data=$2; launch=${LAUNCH:-accelerate launch --num_processes 1 --config_file}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
common=(--report_to none --save_strategy no --eval_strategy no --logging_steps 10 --do_train --do_eval --seed 0)
show() { grep -v "it/s\]\|Warning\|\[A" | grep -i "eval_\|train_loss\|error\|Traceback" | tail -8; }

echo "=== QA, ETC, DDP"
timeout ${STEP_TIMEOUT:-150} $launch examples/accelerate/ddp.yaml -m longbird.tasks.question_answering "${common[@]}" \
  --train_file "$data/xquad.en.json" --validation_file "$data/xquad.en.json" --join_paragraphs \
  --max_train_samples 300 --max_eval_samples 60 --train_tokenizer wordpiece --tokenizer_vocab_size 4000 \
  --model_type longbird_etc --config_overrides "hidden_size=128,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256" \
  --max_seq_length 1024 --max_steps 30 --per_device_train_batch_size 8 --output_dir "$out/qa_etc" 2>&1 | show

echo "=== MLM pretraining, BigBird, FSDP"
timeout ${STEP_TIMEOUT:-150} $launch examples/accelerate/fsdp.yaml -m longbird.tasks.pretraining "${common[@]}" \
  --train_file "$data/wiki_train.tokens" --validation_file "$data/wiki_test.tokens" --sample_by article \
  --train_tokenizer wordpiece --tokenizer_vocab_size 4000 --model_type longbird_bigbird \
  --config_overrides "hidden_size=128,num_hidden_layers=2,num_attention_heads=4,intermediate_size=256,block_size=64,max_position_embeddings=1024" \
  --max_seq_length 1024 --max_steps 30 --per_device_train_batch_size 4 --output_dir "$out/mlm" 2>&1 | show

echo "=== summarization, BigBird-Pegasus, DeepSpeed ZeRO-2"
timeout ${STEP_TIMEOUT:-150} $launch examples/accelerate/deepspeed_zero2.yaml -m longbird.tasks.summarization "${common[@]}" \
  --train_file "$data/scitldr_train.jsonl" --validation_file "$data/scitldr_dev.jsonl" --text_column source \
  --summary_column target --train_tokenizer bpe --tokenizer_vocab_size 3000 --model_type longbird_bigbird_pegasus \
  --config_overrides "d_model=128,encoder_layers=2,decoder_layers=2,encoder_attention_heads=4,decoder_attention_heads=4,encoder_ffn_dim=256,decoder_ffn_dim=256,block_size=32,max_position_embeddings=512" \
  --max_seq_length 512 --max_target_length 48 --max_steps 30 --per_device_train_batch_size 8 \
  --per_device_eval_batch_size 20 --output_dir "$out/summ" 2>&1 | show
for d in qa_etc mlm summ; do ls "$out/$d" 2>/dev/null | grep -c "model.safetensors\|README.md" | sed "s/^/$d saved (weights+card): /"; done
