# Copyright 2026 The mamo_hf authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""What a pre-training run reports: metrics to the trackers (TensorBoard, and `CSVTracker`'s
`logs/mamo/metrics.csv`), the progress bar, the retrieval lines, the skipped records, the training curves and the
model card's description of the run."""

import csv
import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers.integrations import is_tensorboard_available
from transformers.utils import logging

from ..data import shard_format
from ..hub import retrieval_results
from ..modeling_mamo import PRETRAINING_OBJECTIVES
from ..plots import plot_panels, read_curves
from .arguments import CARD_ARGUMENTS, PretrainingArguments
from .validation import SHARD_NAMES

logger = logging.get_logger(__name__)

CURVES_FILE = "training_curves.png"


class CSVTracker(GeneralTracker):
    """An Accelerate tracker that appends every logged value to `<logging_dir>/metrics.csv` (`step, name, value`)."""

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / run_name / "metrics.csv"  # created with the first write (after the lock)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "config.json").write_text(json.dumps(values, indent=2, default=str))

    def discard_after(self, step: int) -> None:
        """Remove the rows logged after `step` (rewritten atomically)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0], *(row for row in rows[1:] if row[0] in ("", "None") or int(row[0]) <= step)]
        staging = self.path.with_suffix(".csv.tmp")
        with staging.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)
        os.replace(staging, self.path)

    def log(self, values: dict, step: int | None = None, **kwargs):
        is_new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if is_new:
                writer.writerow(["step", "name", "value"])
            writer.writerows([step, name, value] for name, value in values.items())


def trackers(report_to: list[str], output_dir: str) -> list:
    trackers = []
    for name in report_to:
        if name == "csv":
            trackers.append(CSVTracker("mamo", Path(output_dir) / "logs"))
        elif name == "tensorboard":
            if is_tensorboard_available():
                trackers.append("tensorboard")
            else:
                logger.warning("TensorBoard is not installed: metrics go to the CSV log only.")
        else:
            raise ValueError(f"Unknown tracker {name!r} in `report_to`: use tensorboard and/or csv.")
    return trackers


def init_trackers(accelerator: Accelerator, args: PretrainingArguments, resumed_step: int | None) -> None:
    """Start the trackers; after a resume, drop what the interrupted run logged past the checkpoint (the steps
    are logged again), so that no step appears twice."""
    init_kwargs = {}
    if resumed_step is not None:
        init_kwargs["tensorboard"] = {"purge_step": resumed_step + 1}
    accelerator.init_trackers(
        "mamo", config={k: str(v) for k, v in dataclasses.asdict(args).items()}, init_kwargs=init_kwargs
    )
    if resumed_step is not None and accelerator.is_main_process:
        for tracker in accelerator.trackers:
            if isinstance(tracker, CSVTracker):
                tracker.discard_after(resumed_step)


def log_step(accelerator: Accelerator, state: dict, losses: dict, scheduler, skipped_records: int) -> None:
    accelerator.log(
        {
            **{f"train/{name}": value for name, value in losses.items()},
            "train/learning_rate": scheduler.get_last_lr()[0],
            "train/skipped_records": skipped_records,
            "train/nonfinite_steps": len(state["nonfinite_steps"]),
        },
        step=state["step"],
    )


def log_retrieval(accelerator: Accelerator, metrics: dict, step: int) -> None:
    """The zero-shot retrieval recalls, to the trackers (`zero_shot/itc_txt_r1`, ...), beside the training losses."""
    accelerator.log(
        {f"zero_shot/{kind}_{name}": value for kind, values in metrics.items() for name, value in values.items()},
        step=step,
    )


def retrieval_line(metrics: dict) -> str:
    return "  ".join(
        f"{kind.upper()}: TR R@1 {values['txt_r1']:.1f} R@5 {values['txt_r5']:.1f} | IR R@1 {values['img_r1']:.1f} "
        f"R@5 {values['img_r5']:.1f}"
        for kind, values in metrics.items()
    )


def gather_skipped(skipped: dict[str, str]) -> dict[str, str]:
    """The bad records met by every rank (source → reason)."""
    merged = {}
    for part in gather_object([skipped]):
        merged.update(part)
    return merged


def skip_report(skipped: dict[str, str]) -> str:
    """One line per kind of bad record, with the files."""
    if not skipped:
        return "No record was skipped."
    kinds = Counter(reason.split(":")[0] for reason in skipped.values())
    lines = [f"Skipped {len(skipped)} bad record(s): " + ", ".join(f"{n} × {kind}" for kind, n in kinds.most_common())]
    lines += [f"  {source}: {reason}" for source, reason in sorted(skipped.items())]
    return "\n".join(lines)


def progress_bar(accelerator: Accelerator, total: int, initial: int):
    return tqdm(
        total=total,
        initial=initial,
        disable=not accelerator.is_local_main_process,
        desc="pre-training",
        unit="step",
        dynamic_ncols=True,
    )


def plot_training_curves(output_dir: Path) -> Path | None:
    """`training_curves.png` beside the model, from the CSV log (`training_panels`; nothing without a log). Returns
    the picture's path."""
    metrics_csv = output_dir / "logs" / "mamo" / "metrics.csv"
    panels = training_panels(metrics_csv) if metrics_csv.exists() else {}
    return plot_panels(panels, output_dir / CURVES_FILE) if panels else None


def training_panels(metrics_csv: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """A run's panels, title → series: one per `train/*` value against the step, but for those that stayed 0 all
    along (no skipped record, no non-finite step), and the zero-shot R@1 before and after training
    (`zero_shot/*`)."""
    curves = {name: points for name, points in read_curves(metrics_csv).items() if any(y for _, y in points)}
    panels = {_TITLES.get(name, name): {name: points} for name, points in curves.items()}
    recalls = read_curves(metrics_csv, prefix="zero_shot/")
    series = {_RECALL_LABELS[name]: points for name, points in recalls.items() if name in _RECALL_LABELS}
    if series:
        panels["zero-shot retrieval R@1 (%), held-out pairs"] = series
    return panels


# Panel titles that say what a logged value is.
_TITLES = {
    "loss": "loss (weighted sum of the objectives)",
    "learning_rate": "learning rate",
    "mlm_accuracy": "MLM accuracy at the masked tokens",
    "skipped_records": "bad records skipped (running count)",
    "nonfinite_steps": "non-finite steps skipped (running count)",
} | {f"loss_{row.name}": f"loss: {row.title}" for row in PRETRAINING_OBJECTIVES}
_RECALL_LABELS = {
    "itc_txt_r1": "ITC, text retrieval",
    "itc_img_r1": "ITC, image retrieval",
    "itm_txt_r1": "ITM, text retrieval",
    "itm_img_r1": "ITM, image retrieval",
}


def data_description(args: PretrainingArguments) -> tuple[str, list[str]]:
    """The training data in words, and the `datasets` entries of the model card."""
    if args.hf_dataset:
        return f"the `datasets` folder {Path(args.hf_dataset).name}", [Path(args.hf_dataset).name]
    if args.train_file:
        try:
            shards = shard_format(args.train_file)  # the patterns' suffixes; checked on the files before the run
        except ValueError:
            shards = None
        if shards:
            # A shard pattern names no dataset; its folder does (`laion400m/{00000..41407}.tar`).
            names = list(dict.fromkeys(Path(file).parent.name or Path(file).stem for file in args.train_file))
            return f"the {SHARD_NAMES[shards]} shards " + ", ".join(args.train_file), names
        names = [Path(file).stem for file in args.train_file]
        return "the caption files " + ", ".join(names), names
    return "the built-in generated shape scenes of mamo_hf", ["mamo_hf demo scenes"]


def card_arguments(args: PretrainingArguments, summary: dict, output_dir: Path) -> dict:
    """What the model card of a pre-training run says (see `mamo_hf.hub.create_model_card`)."""
    data, dataset_names = data_description(args)
    results = []
    if summary["retrieval_after"]:
        held_out = "held-out caption file" if args.eval_file else "held-out generated scenes"
        results = retrieval_results(summary["retrieval_after"], f"{held_out} (zero-shot)")
    training = {name: getattr(args, name) for name in CARD_ARGUMENTS}
    training.update(steps=summary["steps"], seconds=summary["seconds"], final_losses=summary["final_losses"])
    return {
        "model_name": output_dir.name,
        "datasets": dataset_names,
        "base_model": args.init,
        "results": results,
        "summary": f"A MAMO model pre-trained with `mamo-hf pretrain` on {data}.",
        "training": training,
    }


__all__ = ["CSVTracker"]
