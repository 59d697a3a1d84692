"""The `mamo-hf` commands: `demo`, `pretrain`, `demo-data`, `push`, `init-base`, `index`, `search` and `app`.

The entry script `mamo_hf_cli` (outside the package, so that `mamo-hf --help` answers without loading torch) names the
commands and builds their parsers; `main` here adds each command's flags and runs it. Run `mamo-hf <command> --help`
for the options of each command.
"""

import argparse
import dataclasses
import socket
import sys
from pathlib import Path

from .errors import InvalidArgumentError, PretrainingError, first_line


def _image_processor(image_size: int, source: str | None = None):
    """An image processor resizing to `image_size`, with the normalisation of `source`'s processor when it has one."""
    from transformers import AutoImageProcessor
    from transformers.utils import is_torchvision_available

    from .image_processing_mamo import MamoImageProcessor, MamoImageProcessorPil

    statistics = {}
    if source is not None:
        try:
            reference = AutoImageProcessor.from_pretrained(source)
            statistics = {"image_mean": list(reference.image_mean), "image_std": list(reference.image_std)}
        except (OSError, ValueError, AttributeError):
            print(f"No image processor in {source}: using MAMO's default normalisation (mean 0.5, std 0.5).")
    processor_class = MamoImageProcessor if is_torchvision_available() else MamoImageProcessorPil
    return processor_class(size={"height": image_size, "width": image_size}, **statistics)


# What init-base takes for each source: the flag, the model types it accepts, what to call them.
INIT_SOURCES = {"vision": (("vit",), "ViT"), "text": (("bert",), "BERT")}


def _check_init_base(args: argparse.Namespace):
    """init-base's arguments, checked before any weight is read: each source a ViT / BERT checkpoint (its config
    says so), the BERT folder with its tokenizer and deeper than `--num-text-layers`, the output folder new or empty
    (init-base never writes over a model). Returns the text checkpoint's tokenizer; raises `InvalidArgumentError`."""
    from transformers import AutoConfig

    from .checks import check_model_location, load_tokenizer

    configs = {}
    for flag, (model_types, kind) in INIT_SOURCES.items():
        location = getattr(args, flag)
        check_model_location(location, f"--{flag}")
        if Path(location).is_dir() and not (Path(location) / "config.json").is_file():
            raise InvalidArgumentError(f"--{flag} {location}: no config.json; give the folder save_pretrained wrote.")
        try:
            configs[flag] = AutoConfig.from_pretrained(location)
        except (OSError, ValueError) as error:
            raise InvalidArgumentError(f"--{flag} {location}: {first_line(error)}") from None
        if configs[flag].model_type not in model_types:
            raise InvalidArgumentError(
                f"--{flag} {location}: a {configs[flag].model_type} checkpoint; --{flag} takes a {kind} checkpoint."
            )
    patch_size = configs["vision"].patch_size
    if args.image_size % patch_size:
        raise InvalidArgumentError(
            f"--image-size {args.image_size}: must be a multiple of {args.vision}'s patch size ({patch_size})."
        )
    bert_layers = configs["text"].num_hidden_layers
    if bert_layers < 2:
        raise InvalidArgumentError(
            f"--text {args.text}: a BERT of {bert_layers} layer(s); MAMO needs at least 2, one for the text encoder "
            "and one for the fusion encoder."
        )
    if args.num_text_layers is not None and args.num_text_layers >= bert_layers:
        raise InvalidArgumentError(
            f"--num-text-layers {args.num_text_layers}: {args.text} has {bert_layers} layers, and the fusion encoder "
            f"needs at least one: give 1 to {bert_layers - 1}."
        )
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InvalidArgumentError(f"--output {output}: exists and is not an empty folder; choose a new folder.")
    return load_tokenizer(args.text, "--text")


def init_base(args: argparse.Namespace) -> None:
    """Write a MAMO folder initialised from a ViT and a BERT checkpoint (the paper's starting point)."""
    from .hub import write_model_card
    from .modeling_mamo import MamoModel
    from .processing_mamo import MamoProcessor

    tokenizer = _check_init_base(args)
    try:
        model, info = MamoModel.from_vision_text_pretrained(
            args.vision,
            args.text,
            num_text_layers=args.num_text_layers,
            image_size=args.image_size,
            output_loading_info=True,
        )
    except (OSError, ValueError) as error:  # e.g. a folder with a config and no weights
        raise InvalidArgumentError(f"--vision {args.vision} / --text {args.text}: {first_line(error)}") from None
    image_size = model.config.vision_config.image_size
    processor = MamoProcessor(image_processor=_image_processor(image_size, args.vision), tokenizer=tokenizer)
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    write_model_card(
        args.output,
        model_name=Path(args.output).name,
        base_model=[args.vision, args.text],
        summary=f"MAMO initialised as in the paper from `{args.vision}` (image encoder) and `{args.text}` (text and "
        "fusion encoders), before any MAMO pre-training; the projections, modality types and mask embedding are new.",
    )
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"Wrote {args.output}: MAMO with {parameters / 1e6:.1f}M parameters at {image_size} px.")
    print(f"  from {args.vision} (image encoder) and {args.text} (text and fusion encoders)")
    print(f"  new weights, to be learned in pre-training: {', '.join(info['new_keys'])}")
    print(f"Load it with: AutoModel.from_pretrained({args.output!r}), AutoProcessor.from_pretrained({args.output!r})")


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


def _run_pretraining(command: str, arguments):
    """`mamo_hf.training.pretrain(arguments)`; Ctrl-C ends it with one line that says how to go on (exit status 130,
    as a shell reports an interrupted command). Checkpoints are written atomically, so every one on disk is whole."""
    from .training import list_checkpoints
    from .training import pretrain as run

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
    print(
        f"Saved to {arguments.output_dir}. Load it with:\n"
        f"    import mamo_hf\n"
        f"    from transformers import AutoModel, AutoProcessor\n"
        f"    model = AutoModel.from_pretrained({arguments.output_dir!r})\n"
        f"    processor = AutoProcessor.from_pretrained({arguments.output_dir!r})"
    )


def demo_data(args: argparse.Namespace) -> None:
    """Write the built-in demo data as images and an ALBEF caption file, into a new or empty folder."""
    from .data import write_demo_dataset

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


def push(args: argparse.Namespace) -> None:
    """Upload a saved MAMO folder to the Hub."""
    from huggingface_hub.errors import HfHubHTTPError

    from .hub import push_to_hub, upload_problem

    if not (Path(args.folder) / "config.json").is_file():
        raise SystemExit(f"mamo-hf push: error: {args.folder}: not a saved model folder (no config.json).")
    if problem := upload_problem():
        raise SystemExit(f"mamo-hf push: error: {args.repo_id}: {problem}.")
    try:
        push_to_hub(args.folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise SystemExit(f"mamo-hf push: error: {args.repo_id}: {first_line(error)}") from None
    print(f"Pushed {args.folder} to the Hub repository {args.repo_id}.")


def _retrieval_model(command: str, location: str, needs_itm_head: bool = False):
    """The `MamoForImageTextRetrieval` and processor saved at `location`, or a one-line error naming it: not a
    saved MAMO folder, or (with `needs_itm_head`) one whose ITM head was never trained (a bare `MamoModel`)."""
    import json

    from .modeling_mamo import MamoForImageTextRetrieval
    from .processing_mamo import MamoProcessor

    flag = "MODEL" if command == "app" else "--model"
    config = Path(location) / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    if model_type != "mamo" or not (Path(location) / "processor_config.json").is_file():
        raise SystemExit(
            f"mamo-hf {command}: error: {flag} {location}: not a saved MAMO model with its processor (a folder "
            "written by mamo-hf pretrain or save_pretrained)."
        )
    model, loading = MamoForImageTextRetrieval.from_pretrained(location, output_loading_info=True)
    if needs_itm_head and any(key.startswith("itm_head") for key in loading["missing_keys"]):
        raise SystemExit(
            f"mamo-hf {command}: error: {flag} {location} has no trained ITM head (a bare MamoModel): drop --rerank, "
            "or use a pre-trained or retrieval model."
        )
    return model.eval(), MamoProcessor.from_pretrained(location)


def index(args: argparse.Namespace) -> None:
    """Embed the images of a folder that are new or changed since the last run (see `mamo_hf.search`)."""
    from .search import default_index_path, update_index

    model, processor = _retrieval_model("index", args.model)
    index_path = Path(args.index) if args.index else default_index_path(args.folder)
    try:
        update = update_index(args.folder, model, processor, index_path, batch_size=args.batch_size)
    except ValueError as error:
        raise SystemExit(f"mamo-hf index: error: {error}") from None
    print(update.summary(index_path))


def search(args: argparse.Namespace) -> None:
    """Bring a folder's index up to date (unless --no-update), then print its best images for a text."""
    from .search import default_index_path, search_index, update_index

    if not args.text.strip():
        raise SystemExit("mamo-hf search: error: TEXT is empty: say what to look for.")
    model, processor = _retrieval_model("search", args.model, needs_itm_head=args.rerank > 0)
    _warn_of_unknown_words(args.text, processor.tokenizer)
    index_path = Path(args.index) if args.index else default_index_path(args.folder)
    try:
        if not args.no_update:
            update = update_index(args.folder, model, processor, index_path)
            if update.added or update.updated or update.removed:
                print(update.summary(index_path))
        hits = search_index(args.folder, args.text, model, processor, index_path, args.top_k, args.rerank)
    except ValueError as error:
        raise SystemExit(f"mamo-hf search: error: {error}") from None
    for rank, hit in enumerate(hits, start=1):
        itm = f"  ITM {hit.itm_score:.3f}" if hit.itm_score is not None else ""
        print(f"{rank:3d}. {hit.path}  ITC cosine {hit.similarity:.3f}{itm}")


def _warn_of_unknown_words(text: str, tokenizer) -> None:
    """A query whose words the model's tokenizer reads as [UNK] (or drops, as BERT's drops emoji) still gets a ranking,
    which means nothing: say so."""
    words = text.split()
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
    unknown = [
        word for word, word_pieces in zip(words, pieces) if not word_pieces or tokenizer.unk_token_id in word_pieces
    ]
    if unknown:
        print(
            f"mamo-hf search: warning: {len(unknown)} of the {len(words)} words are unknown to the model's tokenizer "
            f"(read as [UNK] or dropped): {' '.join(unknown[:5])}; the ranking can only use the other words.",
            file=sys.stderr,
        )


def app(args: argparse.Namespace) -> None:
    """Serve the interactive demo of a saved model (see `mamo_hf.app`) until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        from .app import APP_EXTRA

        raise SystemExit(f"mamo-hf app: error: the app needs Gradio: {APP_EXTRA}") from None
    from .app import build_app

    if args.images is not None and not Path(args.images).is_dir():
        raise SystemExit(f"mamo-hf app: error: --images {args.images}: not a folder.")
    try:
        socket.getaddrinfo(args.host, args.port)
    except (socket.gaierror, UnicodeError) as error:
        raise SystemExit(f"mamo-hf app: error: --host {args.host}: not a host name or address ({error}).")
    model, processor = _retrieval_model("app", args.model)
    try:
        demo = build_app(model, processor, image_folder=args.images, title=f"MAMO: {Path(args.model).name}")
    except ValueError as error:  # an image folder without images
        raise SystemExit(f"mamo-hf app: error: --images {first_line(error)}") from None
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=False)
    except OSError as error:
        raise SystemExit(
            f"mamo-hf app: error: cannot serve on {args.host}:{args.port} ({first_line(error)})."
        ) from None


def _pretraining_arguments(args: argparse.Namespace):
    """`PretrainingArguments` from the parsed flags (the YAML file's values are the parser's defaults)."""
    from .training.arguments import PretrainingArguments

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

    from .training.arguments import PretrainingArguments

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


def _yaml_settings(argv: list[str] | None) -> dict:
    """The values of `--config FILE.yaml` (PretrainingArguments fields), read before the real parse: they become
    the defaults of the pre-training flags, so that flags given on the command line override them. Each value must
    have its field's type (a YAML `no` is a boolean, a quoted `"no"` a string)."""
    import yaml

    from .training.arguments import FIELD_TYPES, fits_type, type_name

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
    for name, value in values.items():
        if not fits_type(value, FIELD_TYPES[name]):
            raise SystemExit(f"{prefix}: {name} must be {type_name(FIELD_TYPES[name])}, got {value!r}.")
    return values


def _at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def build_parser(command_parsers, settings: dict | None = None) -> argparse.ArgumentParser:
    """The `mamo-hf` parser: `command_parsers()` (of the entry script `mamo_hf_cli`) gives the parser and one
    sub-parser per command, to which each command's flags are added here; `settings` (from `--config`) are defaults
    of the pre-training flags."""
    settings = settings or {}
    parser, commands = command_parsers()

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
        type=_at_least(1, 10_000_000),
        default=1000,
        help="number of pairs, at most 10,000,000 (default 1000)",
    )
    data_parser.add_argument(
        "--seed", type=_at_least(0, 2**32 - 1), default=0, help="seed, 0 to 2**32 - 1 (default 0)"
    )
    data_parser.add_argument(
        "--image-size", type=_at_least(8, 4096), default=64, help="image side in pixels, 8 to 4096 (default 64)"
    )
    data_parser.add_argument(
        "--max-objects", type=_at_least(1, 3), default=3, help="objects per scene, 1 to 3 (default 3)"
    )
    data_parser.add_argument(
        "--templates",
        nargs="+",
        choices=["list", "relation"],
        default=["list"],
        help="caption templates: list and/or relation (default: list)",
    )
    data_parser.set_defaults(run=demo_data)

    push_parser = commands["push"]
    push_parser.add_argument("folder", help="folder written by save_pretrained / mamo-hf pretrain")
    push_parser.add_argument("repo_id", help="Hub repository, e.g. user/mamo-base")
    push_parser.add_argument("--private", action="store_true", help="create the repository as private")
    push_parser.add_argument("--commit-message", default="Upload MAMO model, processor and model card")
    push_parser.set_defaults(run=push)

    init_parser = commands["init-base"]
    init_parser.add_argument("--vision", required=True, help="ViT checkpoint (e.g. google/vit-base-patch16-224-in21k)")
    init_parser.add_argument("--text", required=True, help="BERT checkpoint (e.g. bert-base-uncased)")
    init_parser.add_argument("--output", required=True, help="folder to write")
    init_parser.add_argument(
        "--image-size", type=_at_least(1), default=256, help="pre-training resolution (default 256)"
    )
    init_parser.add_argument(
        "--num-text-layers", type=_at_least(1), default=None, help="BERT layers for the text encoder (default: half)"
    )
    init_parser.set_defaults(run=init_base)

    for name, run in (("index", index), ("search", search)):
        command = commands[name]
        command.add_argument("folder", help="the folder of images (searched recursively)")
        if name == "search":
            command.add_argument("text", help="what to look for, e.g. 'a red circle at the top left'")
            command.add_argument("--top-k", type=_at_least(1), default=5, help="images to show (default 5)")
            command.add_argument(
                "--rerank", type=_at_least(0), default=0, help="re-rank the k best by ITM (default 0: ITC only)"
            )
            command.add_argument("--no-update", action="store_true", help="search the index as it is")
        else:
            command.add_argument("--batch-size", type=_at_least(1), default=32, help="images per forward (default 32)")
        command.add_argument("--model", required=True, help="a saved MAMO folder (e.g. mamo-demo)")
        command.add_argument("--index", default=None, help="the index file (default: FOLDER/.mamo-index.safetensors)")
        command.set_defaults(run=run)

    app_parser = commands["app"]
    app_parser.add_argument("model", help="a saved MAMO folder (e.g. mamo-demo)")
    app_parser.add_argument("--images", default=None, help="a folder of images to search by text (adds a tab)")
    app_parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    app_parser.add_argument("--port", type=_at_least(1, 65535), default=7860, help="port (default 7860)")
    app_parser.set_defaults(run=app)
    return parser


def main(argv: list[str], command_parsers) -> int:
    """Run the `mamo-hf` command `argv` with the parsers of `command_parsers` (the entry script's: `mamo_hf_cli.main`
    calls this); YAML files given with `--config` set defaults."""
    args = build_parser(command_parsers, _yaml_settings(argv)).parse_args(argv)
    try:
        args.run(args)
    except PretrainingError as error:
        print(f"mamo-hf {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0
