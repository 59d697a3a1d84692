"""Pre-train MAMO with Accelerate: the same entry point as `mamo-hf pretrain`.

One process (CPU or GPU):
    python examples/pretrain.py --config examples/configs/demo.yaml
Several GPUs on one machine (DDP):
    accelerate launch --config_file examples/configs/accelerate_ddp.yaml examples/pretrain.py \
        --config examples/configs/pretrain_4m.yaml --init mamo-base --train-file coco.json vg.json cc3m.json sbu.json
Two CPU processes (gloo), e.g. to check a distributed setup without GPUs:
    torchrun --nproc_per_node 2 examples/pretrain.py --config examples/configs/demo.yaml --cpu --max-steps 20

Every flag is a `PretrainingArguments` field (`--help` lists them); `--config` reads the same fields from YAML.
"""

import sys

from mamo_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
