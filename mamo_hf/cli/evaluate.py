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
"""`mamo-hf eval`: a saved MAMO scored on retrieval, the fine-grained benchmark, Winoground, ARO and SugarCrepe from
local files (`mamo_hf.evaluation.suite`), several benchmarks in one call; `scores.json` and `scores.md` out.

Every benchmark's files are read and checked before the model is loaded, and the model before anything is scored,
so that a bad input costs seconds and is one line naming it."""

import argparse
import os
import shlex
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path

from ..data.compositional import ARO_FILES, SUGARCREPE_FILES, aro_examples, sugarcrepe_examples, winoground_examples
from ..data.finegrained import TEMPLATE_NEGATIVES
from ..data.retrieval import load_retrieval_split
from ..data.standard import karpathy_retrieval_split
from ..errors import first_line
from ..evaluation.suite import (
    FINEGRAINED_EXAMPLES,
    FINEGRAINED_SEED,
    markdown_report,
    score_aro,
    score_finegrained,
    score_retrieval,
    score_sugarcrepe,
    score_winoground,
    write_scores,
)
from .images import saved_retrieval_model
from .options import integer_in

BENCHMARKS = ("retrieval", "finegrained", "winoground", "aro", "sugarcrepe")
# The benchmarks that --limit and --chunk-size apply to.
ITEM_BENCHMARKS = ("winoground", "aro", "sugarcrepe")

# Each benchmark's flags (`add_argument`'s arguments): given without their benchmark, they are refused, not ignored.
BENCHMARK_FLAGS = {
    "retrieval": {
        "--retrieval-file": {
            "type": Path,
            "metavar": "FILE",
            "help": "an ALBEF evaluation file: [{'image': path, 'caption': [...]}]",
        },
        "--karpathy": {
            "type": Path,
            "metavar": "FILE",
            "help": "or a Karpathy split file (dataset_coco.json, dataset_flickr30k.json)",
        },
        "--split": {"choices": ["test", "val"], "default": "test", "help": "the Karpathy split (default test)"},
        "--image-root": {
            "type": Path,
            "metavar": "DIR",
            "help": "the folder image paths are under (default: the ALBEF file's)",
        },
        "--image-folder": {
            "default": "",
            "metavar": "DIR",
            "help": "a folder put in front of every Karpathy image path",
        },
        "--k": {
            "type": integer_in(1, 100_000),
            "default": 256,
            "help": "candidates re-ranked by ITM per query (default 256; the paper: 256 COCO, 128 Flickr30K)",
        },
    },
    "finegrained": {
        "--finegrained-examples": {
            "type": integer_in(1, 100_000),
            "default": FINEGRAINED_EXAMPLES,
            "help": f"scenes (default {FINEGRAINED_EXAMPLES})",
        },
        "--finegrained-seed": {
            "type": integer_in(0, 2**31 - 1),
            "default": FINEGRAINED_SEED,
            "help": f"the scenes' seed (default {FINEGRAINED_SEED}, that of BENCHMARKS.md)",
        },
        "--finegrained-templates": {
            "nargs": "+",
            "metavar": "TEMPLATE",
            "choices": list(TEMPLATE_NEGATIVES),
            "default": list(TEMPLATE_NEGATIVES),
            "help": f"caption templates: {', '.join(TEMPLATE_NEGATIVES)} (default all)",
        },
    },
    "winoground": {
        "--winoground-root": {"type": Path, "metavar": "DIR", "help": "the folder with examples.jsonl and images/"}
    },
    "aro": {
        "--aro-root": {"type": Path, "metavar": "DIR", "help": "the folder with ARO's two JSON files and images/"},
        "--aro-subset": {"choices": [*ARO_FILES, "both"], "default": "both", "help": "default both"},
        "--aro-exclude-relations": {
            "type": Path,
            "metavar": "FILE",
            "help": "a text file of relations (one a line) left out of VG-Relation's macro accuracy",
        },
    },
    "sugarcrepe": {
        "--sugarcrepe-root": {
            "type": Path,
            "metavar": "DIR",
            "help": "the folder with SugarCrepe's JSON files (sugar-crepe/data)",
        },
        "--sugarcrepe-image-root": {"type": Path, "metavar": "DIR", "help": "the COCO val2017 images"},
        "--sugarcrepe-files": {
            "nargs": "+",
            "metavar": "NAME",
            "choices": SUGARCREPE_FILES,
            "help": f"of {', '.join(SUGARCREPE_FILES)} (default: all there)",
        },
    },
}
# The flags a benchmark cannot go without (retrieval: one of two files, checked by `_retrieval_split`).
REQUIRED_FLAGS = {
    "winoground": ("--winoground-root",),
    "aro": ("--aro-root",),
    "sugarcrepe": ("--sugarcrepe-root", "--sugarcrepe-image-root"),
}


def _error(message: str) -> SystemExit:
    """The one-line error of `mamo-hf eval`."""
    return SystemExit(f"mamo-hf eval: error: {message}")


def _value(args: argparse.Namespace, flag: str):
    return getattr(args, flag.removeprefix("--").replace("-", "_"))


def _check_flags(args: argparse.Namespace, benchmarks: list[str]) -> None:
    """Each benchmark asked for has its files; no benchmark's flag is given without its benchmark."""
    for name, flags in BENCHMARK_FLAGS.items():
        for flag, options in flags.items():
            if name not in benchmarks and _value(args, flag) != options.get("default"):
                raise _error(f"{flag} is a flag of --benchmark {name}, which this call does not score.")
    if args.limit is not None and not set(ITEM_BENCHMARKS) & set(benchmarks):
        raise _error(f"--limit applies to {', '.join(ITEM_BENCHMARKS)}, which this call does not score.")
    for name in benchmarks:
        missing = [flag for flag in REQUIRED_FLAGS.get(name, ()) if _value(args, flag) is None]
        if missing:
            raise _error(f"--benchmark {name} needs {' and '.join(missing)}.")


def _check_output_dir(folder: Path) -> None:
    """The output folder can be made and written to (checked before any work; nothing is written until the end)."""
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise _error(f"--output-dir {folder}: {existing} is a file; give a folder.")
    if not os.access(existing, os.W_OK):
        raise _error(f"--output-dir {folder}: {existing} is not writable.")


def _device(name: str):
    """The torch device that `--device` names, if this machine has it."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise _error(f"--device {name}: not a device; use cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise _error(f"--device {name}: use cpu, cuda or cuda:N.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise _error(f"--device {name}: no such CUDA GPU here; leave --device out to run on the CPU.")
    return device


def _retrieval_split(args: argparse.Namespace):
    """The retrieval split of `--retrieval-file` or `--karpathy`."""
    if (args.retrieval_file is None) == (args.karpathy is None):
        raise _error("--benchmark retrieval needs one of --retrieval-file and --karpathy.")
    if args.retrieval_file is not None:
        if args.split != "test" or args.image_folder:
            raise _error("--split and --image-folder go with --karpathy, not with --retrieval-file.")
        return load_retrieval_split(args.retrieval_file, args.image_root)
    if args.image_root is None:
        raise _error("--karpathy needs --image-root, the folder its image paths are under.")
    return karpathy_retrieval_split(args.karpathy, args.image_root, args.split, args.image_folder)


def _retrieval(args: argparse.Namespace) -> dict:
    split = _retrieval_split(args)
    return {"retrieval": partial(score_retrieval, split=split, k=args.k, batch_size=args.batch_size)}


def _finegrained(args: argparse.Namespace) -> dict:
    settings = {"examples": args.finegrained_examples, "seed": args.finegrained_seed, "batch_size": args.batch_size}
    return {"finegrained": partial(score_finegrained, templates=args.finegrained_templates, **settings)}


def _winoground(args: argparse.Namespace) -> dict:
    examples = winoground_examples(args.winoground_root)[: args.limit]
    return {"winoground": partial(score_winoground, examples=examples, **_sizes(args))}


def _aro(args: argparse.Namespace) -> dict:
    subsets = list(ARO_FILES) if args.aro_subset == "both" else [args.aro_subset]
    file = args.aro_exclude_relations
    excluded = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()] if file else []
    scorers = {}
    for subset in subsets:
        items = aro_examples(args.aro_root, subset)[: args.limit]
        scorers[f"aro/{subset}"] = partial(
            score_aro, items=items, subset=subset, excluded_relations=excluded, **_sizes(args)
        )
    return scorers


def _sugarcrepe(args: argparse.Namespace) -> dict:
    items = sugarcrepe_examples(args.sugarcrepe_root, args.sugarcrepe_image_root, args.sugarcrepe_files)
    return {"sugarcrepe": partial(score_sugarcrepe, items=items[: args.limit], **_sizes(args))}


def _sizes(args: argparse.Namespace) -> dict:
    return {"batch_size": args.batch_size, "chunk_size": args.chunk_size}


# Each benchmark's reader: its files read and checked, `{result name: scorer(model, processor)}` (ARO: one result
# per subset, `aro/relation` and `aro/attribution`).
READERS = {
    "retrieval": _retrieval,
    "finegrained": _finegrained,
    "winoground": _winoground,
    "aro": _aro,
    "sugarcrepe": _sugarcrepe,
}


def _model(args: argparse.Namespace, device, benchmarks: list[str]):
    """The model and processor of MODEL on `device`; a bare `MamoModel` (no trained ITM head) is scored by ITC only,
    and refused for the fine-grained benchmark, which needs ITM."""
    try:
        model, processor, has_itm_head = saved_retrieval_model("eval", args.model, "MODEL")
    except (OSError, ValueError) as error:
        raise _error(f"MODEL {args.model}: {first_line(error)}") from None
    if not has_itm_head:
        if "finegrained" in benchmarks:
            raise _error(
                f"MODEL {args.model} has no trained ITM head (a bare MamoModel): --benchmark finegrained needs it."
            )
        print(
            f"mamo-hf eval: warning: MODEL {args.model} has no trained ITM head (a bare MamoModel): ITC scores only.",
            file=sys.stderr,
        )
        model = model.mamo
    return model.to(device), processor


def _score(scorers: dict, model, processor) -> tuple[dict, dict]:
    """Each benchmark's scores, and the seconds each took."""
    import torch

    results, seconds = {}, {}
    for name, scorer in scorers.items():
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                results[name] = scorer(model, processor)
        except (OSError, ValueError) as error:  # an image that cannot be read
            raise _error(f"{name}: {first_line(error)}") from None
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: {results[name]['n']} items scored in {seconds[name]} s", flush=True)
    return results, seconds


def evaluate(args: argparse.Namespace) -> None:
    """Check every input, read every benchmark's files, load the model, score, write `scores.json` and `scores.md`."""
    from .. import __version__

    benchmarks = list(dict.fromkeys(args.benchmark))
    _check_flags(args, benchmarks)
    _check_output_dir(args.output_dir)
    device = _device(args.device)
    scorers = {}
    for name in benchmarks:
        try:
            scorers |= READERS[name](args)
        except (OSError, ValueError) as error:
            raise _error(f"{name}: {first_line(error)}") from None
    model, processor = _model(args, device, benchmarks)
    results, seconds = _score(scorers, model, processor)
    report = {
        "model": args.model,
        "command": shlex.join(args.command_line),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": str(device),
        "mamo_hf": __version__,
        "seconds": seconds,
        "benchmarks": results,
    }
    try:
        paths = write_scores(report, args.output_dir)
    except OSError as error:
        raise _error(f"--output-dir {args.output_dir}: {first_line(error)}") from None
    print(markdown_report(report))
    print(f"wrote {paths[0]} and {paths[1]}")


def add_evaluation_command(commands: dict) -> None:
    """The flags of `eval`: the model, the benchmarks, what they share, then each benchmark's own."""
    parser = commands["eval"]
    parser.add_argument("model", help="a saved MAMO folder (e.g. mamo-demo)")
    parser.add_argument(
        "--benchmark",
        nargs="+",
        choices=BENCHMARKS,
        required=True,
        metavar="NAME",
        help=f"one or several of {', '.join(BENCHMARKS)} (e.g. --benchmark winoground aro)",
    )
    parser.description = (
        "Score a saved MAMO on benchmarks from local files: R@1/5/10 (ITC, ITM re-ranking), accuracies and group "
        "scores by ITC and ITM, in OUTPUT_DIR/scores.json and scores.md."
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("eval-results"),
        help="gets scores.json and scores.md (default eval-results)",
    )
    parser.add_argument(
        "--batch-size", type=integer_in(1, 4096), default=64, help="images or texts per forward (default 64)"
    )
    parser.add_argument(
        "--chunk-size",
        type=integer_in(1, 100_000),
        default=128,
        help=f"items encoded at once by {', '.join(ITEM_BENCHMARKS)} (default 128)",
    )
    parser.add_argument(
        "--limit",
        type=integer_in(1, 10_000_000),
        default=None,
        help=f"score only the first items of {', '.join(ITEM_BENCHMARKS)}",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    for name, flags in BENCHMARK_FLAGS.items():
        group = parser.add_argument_group(f"--benchmark {name}")
        for flag, options in flags.items():
            group.add_argument(flag, **options)
    parser.set_defaults(run=evaluate)


__all__ = ["add_evaluation_command"]
