# Sourced by the MNIST device scripts: the jsonargparse wheels and gunzipped MNIST + Fashion-MNIST from .gpu/
# (carried beside the repo), W&B off, unbuffered output.
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
for f in .gpu/data/*/raw/*.gz; do rel=${f#.gpu/data/}; mkdir -p "/tmp/data/$(dirname "$rel")"; gunzip -c "$f" > "/tmp/data/${rel%.gz}"; done
export DFM_DATA_DIR=/tmp/data
