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
"""`mamo-hf demo`, `mamo-hf pretrain` and `mamo-hf demo-data`: pre-training from flags and YAML files, and the
built-in demo data."""

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import first_line
from .options import integer_in

DEMO_SETTINGS = {
    "model": "tiny",
    "image_size": 64,
    "demo_pairs": 20000,
    # Half the scenes as minimal pairs: without them ITM never learns binding (BENCHMARKS.md, fine-grained benchmark).
    "demo_minimal_pairs": 0.5,
    "eval_pairs": 200,
    "batch_size": 32,
    "max_steps": 1500,
    "learning_rate": 1e-3,
    "min_learning_rate": 1e-4,
    "warmup_steps": 100,
    "num_workers": 1,
    "checkpoint_every": 500,
    "log_every": 50,
    "output_dir": "mamo-demo",
    "overwrite_output_dir": True,  # the demo's own folder: running the demo again replaces it
}


def pretrain(args: argparse.Namespace) -> None:
    """Pre-train MAMO (see `mamo_hf.training.pretrain`) from a YAML file and/or flags."""
    summary = _run_pretraining("pretrain", _pretraining_arguments(args)).summary
    print(f"Done: {summary['steps']} steps in {summary['seconds']:.0f} s; model saved to {args.output_dir}.")
    print(_curves_line(Path(args.output_dir)))


def _curves_line(output_dir: Path) -> str:
    """Where a run's losses, learning rate and zero-shot recalls are drawn (and logged)."""
    curves = output_dir / "training_curves.png"
    logs = output_dir / "logs" / "mamo"
    if curves.exists():
        return f"Training curves: {curves} (the values: {logs / 'metrics.csv'}; tensorboard --logdir {logs})"
    return f"Logs: {logs}"


def _run_pretraining(command: str, arguments):
    """`mamo_hf.training.pretrain(arguments)`; Ctrl-C ends it with one line that says how to go on (exit status 130,
    as a shell reports an interrupted command). Checkpoints are written atomically, so every one on disk is whole."""
    from ..training import list_checkpoints
    from ..training import pretrain as run

    try:
        return run(arguments)
    except KeyboardInterrupt:
        output_dir = Path(arguments.output_dir)
        if checkpoints := list_checkpoints(output_dir) if output_dir.is_dir() else []:
            next_step = f"continue from {checkpoints[-1].name} with --resume latest"
        else:
            next_step = "no checkpoint was saved yet: start again with --overwrite-output-dir"
        print(f"\nmamo-hf {command}: interrupted; {next_step}.", file=sys.stderr)
        raise SystemExit(130) from None


def demo(args: argparse.Namespace) -> None:
    """The main job: pre-train a tiny MAMO on the built-in data, with retrieval before and after."""
    arguments = _pretraining_arguments(args)
    summary = _run_pretraining("demo", arguments).summary
    print(f"\nPre-trained a tiny MAMO for {summary['steps']} steps in {summary['seconds']:.0f} s.")
    before, after = summary["retrieval_before"], summary["retrieval_after"]
    if before and after:
        for kind in after:
            print(
                f"  {kind.upper()} zero-shot R@1 (text retrieval / image retrieval): "
                f"{before[kind]['txt_r1']:.1f} / {before[kind]['img_r1']:.1f} before → "
                f"{after[kind]['txt_r1']:.1f} / {after[kind]['img_r1']:.1f} after"
            )
    print(_curves_line(Path(arguments.output_dir)))
    print(
        f"Saved to {arguments.output_dir}. Load it with:\n"
        f"    import mamo_hf\n"
        f"    from transformers import AutoModel, AutoProcessor\n"
        f"    model = AutoModel.from_pretrained({arguments.output_dir!r})\n"
        f"    processor = AutoProcessor.from_pretrained({arguments.output_dir!r})"
    )


def demo_data(args: argparse.Namespace) -> None:
    """Write the built-in demo data as images and an ALBEF caption file, into a new or empty folder."""
    from ..data import write_demo_dataset

    output = Path(args.output)
    if not args.output.strip():
        raise SystemExit("mamo-hf demo-data: error: --output is empty: name the folder to write.")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        what = "a file" if not output.is_dir() else "a folder that holds files"
        raise SystemExit(f"mamo-hf demo-data: error: --output {output} is {what}: give a new or empty folder.")
    try:
        path = write_demo_dataset(
            args.output,
            args.num_pairs,
            seed=args.seed,
            image_size=args.image_size,
            max_objects=args.max_objects,
            templates=tuple(args.templates),
        )
    except OSError as error:  # a file where a folder must go, no permission, a full disk
        raise SystemExit(f"mamo-hf demo-data: error: --output {output}: cannot write there ({first_line(error)}).")
    print(f"Wrote {args.num_pairs} pairs: {path}")


def _pretraining_arguments(args: argparse.Namespace):
    """`PretrainingArguments` from the parsed flags (the YAML file's values are the parser's defaults)."""
    from ..training.arguments import PretrainingArguments

    names = {field.name for field in dataclasses.fields(PretrainingArguments)}
    values = {name: value for name, value in vars(args).items() if name in names}
    values["model_config"] = dict(values.get("model_config") or {})
    return PretrainingArguments(**values)


class _KeyValue(argparse.Action):
    """`--model-config KEY=VALUE` (repeatable): values are read as YAML scalars (numbers, booleans, strings)."""

    def __call__(self, parser, namespace, value, option_string=None):
        import yaml

        key, separator, raw = value.partition("=")
        if not separator:
            parser.error(f"{option_string} expects KEY=VALUE, got {value!r}")
        settings = dict(getattr(namespace, self.dest) or {})
        settings[key] = yaml.safe_load(raw)
        setattr(namespace, self.dest, settings)


def _add_pretraining_flags(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """One flag per `PretrainingArguments` field, plus `--config FILE.yaml` whose keys are the same fields."""
    import typing

    from ..training.arguments import PretrainingArguments

    parser.add_argument("--config", help="YAML file of PretrainingArguments fields; flags override it")
    hints = typing.get_type_hints(PretrainingArguments)
    for spec in dataclasses.fields(PretrainingArguments):
        flag, hint = "--" + spec.name.replace("_", "-"), hints[spec.name]
        default = defaults.get(
            spec.name, spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        )
        help_text = spec.metadata.get("help", "")
        if default is not None and "default:" not in help_text:  # a help that explains its default keeps it
            help_text += f" (default: {default})"
        scalar = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif hint is dict:
            parser.add_argument(flag, action=_KeyValue, default=default, metavar="KEY=VALUE", help=help_text)
        elif typing.get_origin(hint) is list:
            parser.add_argument(flag, nargs="+", default=default, help=help_text)
        else:
            parser.add_argument(flag, type=scalar, default=default, help=help_text)


def yaml_settings(argv: list[str] | None) -> dict:
    """The values of `--config FILE.yaml` (PretrainingArguments fields), read before the real parse: they become
    the defaults of the pre-training flags, so that flags given on the command line override them. Each value must
    have its field's type (a YAML `no` is a boolean, a quoted `"no"` a string)."""
    import yaml

    from ..training.arguments import FIELD_TYPES, fits_type, type_name

    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config")
    known, rest = probe.parse_known_args(argv)
    if not known.config:
        return {}
    command = next((word for word in rest if not word.startswith("-")), "")
    prefix = f"mamo-hf {command}: error: --config {known.config}"
    try:
        values = yaml.safe_load(Path(known.config).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise SystemExit(f"{prefix}: cannot read it ({error.strerror}).") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        where = getattr(error, "problem_mark", None)
        place = f" (line {where.line + 1})" if where is not None else ""
        raise SystemExit(f"{prefix}: not valid YAML{place}.") from None
    if not isinstance(values, dict):
        raise SystemExit(f"{prefix}: expected a mapping of PretrainingArguments fields.")
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise SystemExit(f"{prefix}: unknown key(s) {unknown}; the keys are PretrainingArguments fields.")
    values = {name: _yaml_number(value, FIELD_TYPES[name]) for name, value in values.items()}
    for name, value in values.items():
        if not fits_type(value, FIELD_TYPES[name]):
            raise SystemExit(f"{prefix}: {name} must be {type_name(FIELD_TYPES[name])}, got {value!r}.")
    return values


def _yaml_number(value, hint):
    """A number YAML left as a string: YAML 1.1 reads `1e-4` (no dot) as text, though users write it so; for a float
    field it is the number it spells. Any other value is returned as it is."""
    from ..training.arguments import fits_type

    if isinstance(value, str) and fits_type(1.0, hint):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def add_pretraining_commands(commands: dict, settings: dict) -> None:
    """The flags of `demo` and `pretrain` (one per `PretrainingArguments` field; `settings` from `--config` are their
    defaults) and of `demo-data`."""
    demo_parser = commands["demo"]
    _add_pretraining_flags(demo_parser, {**DEMO_SETTINGS, **settings})
    demo_parser.set_defaults(run=demo)

    pretrain_parser = commands["pretrain"]
    _add_pretraining_flags(pretrain_parser, settings)
    pretrain_parser.set_defaults(run=pretrain)

    data_parser = commands["demo-data"]
    data_parser.add_argument("--output", required=True, help="folder to write")
    data_parser.add_argument(
        "--num-pairs",
        type=integer_in(1, 10_000_000),
        default=1000,
        help="number of pairs, at most 10,000,000 (default 1000)",
    )
    data_parser.add_argument(
        "--seed", type=integer_in(0, 2**32 - 1), default=0, help="seed, 0 to 2**32 - 1 (default 0)"
    )
    data_parser.add_argument(
        "--image-size", type=integer_in(8, 4096), default=64, help="image side in pixels, 8 to 4096 (default 64)"
    )
    data_parser.add_argument(
        "--max-objects", type=integer_in(1, 3), default=3, help="objects per scene, 1 to 3 (default 3)"
    )
    data_parser.add_argument(
        "--templates",
        nargs="+",
        choices=["list", "relation"],
        default=["list"],
        help="caption templates: list and/or relation (default: list)",
    )
    data_parser.set_defaults(run=demo_data)


__all__ = ["DEMO_SETTINGS", "add_pretraining_commands", "yaml_settings"]
