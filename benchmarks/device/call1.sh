# Device call 1 (carry .gpu): install the carried wheels into /tmp/cal/site, keep the GGUF's smaller part there
# for call 2 (the machine stays warm 30 s after a call), then measure versions and training on seeded random
# SmolLM2 weights (speed and hashes need no trained weights). SECTIONS / DEADLINE / EXTRA may be overridden.
set -e
mkdir -p /tmp/cal && cp -r .gpu/. /tmp/cal/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cal/site \
  /tmp/cal/whl/*.whl
export PYTHONPATH=/tmp/cal/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PRUNEREC_MODELS=/tmp/cal/skeleton CUBLAS_WORKSPACE_CONFIG=:4096:8
python3 -m pip freeze --all > $OUT/device-freeze.txt  # the bundle's --have list (prunerec_utils.bundle)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu,memory.used --format=csv | tee $OUT/nvidia_smi.txt
set -o pipefail
python3 benchmarks/gpu_calibration.py measure --rows /tmp/cal/rows.json --sections ${SECTIONS:-versions,train} \
  --random-init --json $OUT/calibration_train.json --deadline ${DEADLINE:-270} ${EXTRA:-} 2>&1 \
  | grep --line-buffered -v -e "^{'" -e "it/s\]" | tee $OUT/log_train.txt
