# Device call 2 (carry .gpu2), right after call 1 on the same warm machine: join and check the GGUF, convert it to
# an HF folder (~40 s there), then measure the evaluator (against the CPU kernel's fp32 lists) and the pruning
# scores on the real SmolLM2-135M-Instruct weights.
[ -f /tmp/cal/gguf.xz.partab ] && [ -d /tmp/cal/site ] || { echo "call 1's files are gone: a fresh machine"; exit 3; }
export PYTHONPATH=/tmp/cal/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CUBLAS_WORKSPACE_CONFIG=:4096:8
G=/tmp/cal/SmolLM2-135M-Instruct.Q4_1.gguf
cat .gpu2/gguf.xz.partaa /tmp/cal/gguf.xz.partab > /tmp/cal/gguf.xz
(cd /tmp/cal && sha256sum -c gguf.xz.sha256) || exit 4
xz -dc -T8 /tmp/cal/gguf.xz > $G
export PRUNEREC_SMOLLM2_GGUF=$G PRUNEREC_MODELS=/tmp/cal/models
t0=$(date +%s); python3 -c "from prunerec_utils.assets import smollm2_dir; print(smollm2_dir())" 2>&1 | tail -1
echo "converted in $(( $(date +%s) - t0 )) s"
set -o pipefail
python3 benchmarks/gpu_calibration.py measure --rows /tmp/cal/rows.json --sections ${SECTIONS:-versions,evaluator,scoring} \
  --model smollm2-135m --cpu-lists /tmp/cal/cpu_lists.json --json $OUT/calibration_eval.json \
  --deadline ${DEADLINE:-240} ${EXTRA:-} 2>&1 | grep --line-buffered -v -e "^{'" -e "it/s\]" | tee $OUT/log_eval.txt
