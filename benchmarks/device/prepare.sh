#!/usr/bin/env bash
# Here (CPU), before a GPU window: what the two device calls of benchmarks/gpu_calibration.py carry.
#   .gpu/   (call 1, ~50 MiB): wheels the device image lacks, the model's config + tokenizer, the rows,
#           the CPU kernel's fp32 lists, and the smaller part of the xz-compressed SmolLM2 GGUF
#   .gpu2/  (call 2, ~55 MiB): the larger part of the GGUF
# The tree travels too (7 MiB, growing with each committed chapter): the GGUF is cut at what it leaves of a call's
# 64 MiB (`python -m prunerec_utils.bundle room`), and a folder over it is refused here, in one line.
# Both folders are ignored through .git/info/exclude. Takes ~8 min (the CPU lists: ~6 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || printf '/.gpu/\n/.gpu2/\n' >> .git/info/exclude
mkdir -p .gpu/whl .gpu2 .gpu/skeleton/smollm2-135m
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0
MODEL=$($PY -c "from prunerec_utils.assets import smollm2_dir; print(smollm2_dir())")
cp "$MODEL"/{chat_template.jinja,config.json,generation_config.json,tokenizer.json,tokenizer_config.json} \
  .gpu/skeleton/smollm2-135m/
$PY benchmarks/gpu_calibration.py export-rows --out .gpu/rows.json
[ -f .gpu/cpu_lists.json ] || $PY benchmarks/gpu_calibration.py cpu-lists --rows .gpu/rows.json \
  --out .gpu/cpu_lists.json --n 256
GGUF=$($PY -c "from prunerec_utils.assets import smollm2_gguf; print(smollm2_gguf())")
tmp=$(mktemp -d)
xz -T2 -6 -c "$GGUF" > "$tmp/gguf.xz"
ROOM=$($PY -m prunerec_utils.bundle room)
(cd "$tmp" && sha256sum gguf.xz > gguf.xz.sha256 && split -b $((ROOM * 1024 * 1024)) gguf.xz gguf.xz.part)
[ ! -e "$tmp/gguf.xz.partac" ] || { echo "the GGUF needs three parts of $ROOM MiB: two calls cannot carry it" >&2; exit 1; }
rm -f .gpu/gguf.xz.partab .gpu2/gguf.xz.partaa
mv "$tmp/gguf.xz.partab" "$tmp/gguf.xz.sha256" .gpu/ && mv "$tmp/gguf.xz.partaa" .gpu2/ && rm -rf "$tmp"
for d in .gpu .gpu2; do
  bytes=$(find "$d" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  [ "$bytes" -le $((ROOM * 1024 * 1024)) ] || { echo "$d is over the $ROOM MiB a call carries beside the tree" >&2; exit 1; }
done
du -sh .gpu .gpu2
