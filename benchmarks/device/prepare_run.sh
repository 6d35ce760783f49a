#!/usr/bin/env bash
# Here (CPU), before a GPU window of the reference run: the offline bundle for the device, one part per call.
#   benchmarks/device/prepare_run.sh [HAVE]    HAVE: the device's `pip freeze --all`
#                                              (default benchmarks/device/device-freeze.txt, else h200-have.txt)
# Writes .gpu-run/call1/part-000, .gpu-run/call2/part-001, ... (each call carries one folder and the tree travels
# too, so a part holds what the tree leaves of a call's 64 MiB: `python -m prunerec_utils.bundle room`, 56 MiB with
# a 7 MiB tree), and bundle.json + unpack.sh beside the last part.
# On the device, each call but the last:   mkdir -p /tmp/b && cp .gpu-run/callN/* /tmp/b/
# and the last (it checks every part, installs the wheels into /tmp/p/site, runs the shard, packs it):
#   cp .gpu-run/callN/* /tmp/b/ && bash /tmp/b/unpack.sh /tmp/p --notebooks 01 02 03 --profile default \
#       --archive $OUT/shard-01-03.tgz --runs-root /tmp/runs
# Later shards on the same warm machine: PYTHONPATH=/tmp/p/site:/tmp/p python3 -m prunerec_utils.shards run ...
# Nothing of a window outlives its session but what is committed: commit each archive that comes back under
# shards/default/<dataset>/ (small: no weights). They then travel with the tree, and a later window (a fresh
# machine, another session) runs after them, so their evaluations are read back and only the weights its chapters
# use are made again (identity-checked):
#   ... python3 -m prunerec_utils.shards run --notebooks 04 --profile default --runs-root /tmp/runs \
#       --archive $OUT/shard-04.tgz --after shards/default/ml-100k/shard-01-03.tgz
# The session that brings back the last one merges them all (README, "On one GPU without network", step 4).
# Between the teacher's shard and the pruning ones, the teacher's gates (exit 1: a gate does not hold, so the
# pruning shards would measure retention of a teacher not worth pruning; spend the minutes on the teacher):
#   PYTHONPATH=/tmp/p/site:/tmp/p python3 -m prunerec_utils.studies.gates --profile default --runs-root /tmp/runs
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HAVE=${1:-benchmarks/device/device-freeze.txt}
[ -f "$HAVE" ] || HAVE=benchmarks/device/h200-have.txt
grep -qx "/.gpu-run/" .git/info/exclude 2>/dev/null || echo "/.gpu-run/" >> .git/info/exclude
rm -rf .gpu-run && mkdir -p .gpu-run
$PY -m prunerec_utils.bundle build --have "$HAVE" --python 3.12 --out .gpu-run/bundle  # parts: bundle room
n=0
for part in .gpu-run/bundle/part-*; do
  n=$((n + 1)); mkdir -p .gpu-run/call$n && mv "$part" .gpu-run/call$n/
done
mv .gpu-run/bundle/bundle.json .gpu-run/bundle/unpack.sh .gpu-run/call$n/ && rmdir .gpu-run/bundle
du -sh .gpu-run/call*
