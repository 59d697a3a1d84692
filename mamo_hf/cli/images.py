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
"""`mamo-hf index`, `mamo-hf search` and `mamo-hf app`: one's own image folder searched by text, and the
interactive demo in the browser."""

import argparse
import socket
import sys
from pathlib import Path

from ..errors import first_line
from .options import integer_in


def saved_retrieval_model(command: str, location: str, flag: str = "--model"):
    """The `MamoForImageTextRetrieval` and processor saved at `location`, and whether its ITM head was saved with
    it (False for a bare `MamoModel`, whose head would be untrained); a one-line error naming `flag` for a folder
    that is not a saved MAMO model with its processor."""
    import json

    from ..modeling_mamo import MamoForImageTextRetrieval
    from ..processing_mamo import MamoProcessor

    config = Path(location) / "config.json"
    try:
        settings = json.loads(config.read_bytes()) if config.is_file() else {}
    except (UnicodeDecodeError, ValueError):
        settings = None
    if not isinstance(settings, dict):
        raise SystemExit(
            f"mamo-hf {command}: error: {flag} {location}: {config} is not a JSON object; save the model again."
        )
    if settings.get("model_type") != "mamo" or not (Path(location) / "processor_config.json").is_file():
        raise SystemExit(
            f"mamo-hf {command}: error: {flag} {location}: not a saved MAMO model with its processor (a folder "
            "written by mamo-hf pretrain or save_pretrained)."
        )
    try:
        model, loading = MamoForImageTextRetrieval.from_pretrained(location, output_loading_info=True)
    except (ValueError, OSError, RuntimeError) as error:  # a config that contradicts itself or its weights' shapes
        raise SystemExit(
            f"mamo-hf {command}: error: {flag} {location}: cannot load it ({first_line(error)})"
        ) from None
    has_itm_head = not any(key.startswith("itm_head") for key in loading["missing_keys"])
    return model.eval(), MamoProcessor.from_pretrained(location), has_itm_head


def _retrieval_model(command: str, location: str, needs_itm_head: bool = False):
    """`saved_retrieval_model` of `--model` (`MODEL` for the app), without its ITM head's flag; with
    `needs_itm_head`, a one-line error for a folder whose ITM head was never trained (a bare `MamoModel`)."""
    flag = "MODEL" if command == "app" else "--model"
    model, processor, has_itm_head = saved_retrieval_model(command, location, flag)
    if needs_itm_head and not has_itm_head:
        raise SystemExit(
            f"mamo-hf {command}: error: {flag} {location} has no trained ITM head (a bare MamoModel): drop --rerank, "
            "or use a pre-trained or retrieval model."
        )
    return model, processor


def index(args: argparse.Namespace) -> None:
    """Embed the images of a folder that are new or changed since the last run (see `mamo_hf.search`)."""
    from ..search import default_index_path, update_index

    model, processor = _retrieval_model("index", args.model)
    index_path = Path(args.index) if args.index else default_index_path(args.folder)
    try:
        update = update_index(args.folder, model, processor, index_path, batch_size=args.batch_size)
    except ValueError as error:
        raise SystemExit(f"mamo-hf index: error: {first_line(error)}") from None
    except OSError as error:  # an index that cannot be written
        raise SystemExit(f"mamo-hf index: error: {first_line(error)} Or give --index a path elsewhere.") from None
    print(update.summary(index_path))


def search(args: argparse.Namespace) -> None:
    """Bring a folder's index up to date (unless --no-update), then print its best images for a text."""
    from ..search import default_index_path, itm_separates, search_index, update_index

    if not args.text.strip():
        raise SystemExit("mamo-hf search: error: TEXT is empty: say what to look for.")
    try:
        args.text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as surrogates, which no tokenizer takes
        raise SystemExit("mamo-hf search: error: TEXT is not UTF-8 text: type it in a UTF-8 terminal.") from None
    model, processor = _retrieval_model("search", args.model, needs_itm_head=args.rerank > 0)
    _check_words(args.text, processor.tokenizer)
    index_path = Path(args.index) if args.index else default_index_path(args.folder)
    try:
        update = None if args.no_update else update_index(args.folder, model, processor, index_path)
        if update and (update.added or update.updated or update.removed or update.unreadable):
            print(update.summary(index_path))
        hits = search_index(args.folder, args.text, model, processor, index_path, args.top_k, args.rerank)
    except ValueError as error:
        raise SystemExit(f"mamo-hf search: error: {first_line(error)}") from None
    except OSError as error:  # an index that cannot be written
        raise SystemExit(f"mamo-hf search: error: {first_line(error)} Or give --index a path elsewhere.") from None
    if not hits:
        reason = f"{len(update.unreadable)} unreadable" if update else "run without --no-update to index them again"
        raise SystemExit(f"mamo-hf search: error: {args.folder}: no indexed image can be read ({reason}).")
    for rank, hit in enumerate(hits, start=1):
        itm = f"  ITM {hit.itm_score:.3f}" if hit.itm_score is not None else ""
        print(f"{rank:3d}. {hit.path}  ITC cosine {hit.similarity:.3f}{itm}")
    if args.rerank and not itm_separates(hits):
        print(
            "mamo-hf search: warning: the ITM head gives these images nearly the same score: it cannot tell them "
            "apart, so they keep the ITC order.",
            file=sys.stderr,
        )


def _check_words(text: str, tokenizer) -> None:
    """A query of words the model's tokenizer reads as [UNK] (or drops, as BERT's drops emoji): refused when none is
    known (a ranking would mean nothing), a warning naming them otherwise."""
    from ..search import unknown_words

    unknown, words = unknown_words(text, tokenizer), text.split()
    if len(unknown) == len(words):
        raise SystemExit(
            f"mamo-hf search: error: TEXT: none of its words is known to the model's tokenizer ({' '.join(words[:5])}"
            "): a ranking would mean nothing; use words of the model's captions."
        )
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
        from ..app import APP_EXTRA

        raise SystemExit(f"mamo-hf app: error: the app needs Gradio: {APP_EXTRA}") from None
    from ..app import build_app

    if args.images is not None and not Path(args.images).is_dir():
        raise SystemExit(f"mamo-hf app: error: --images {args.images}: not a folder.")
    try:
        socket.getaddrinfo(args.host, args.port)
    except (socket.gaierror, UnicodeError) as error:
        raise SystemExit(f"mamo-hf app: error: --host {args.host}: not a host name or address ({error}).")
    model, processor = _retrieval_model("app", args.model)
    try:
        demo = build_app(model, processor, image_folder=args.images, title=f"MAMO: {Path(args.model).name}")
    except (ValueError, OSError) as error:  # an image folder without images, or whose index cannot be written
        raise SystemExit(f"mamo-hf app: error: --images {first_line(error)}") from None
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=False)
    except OSError as error:
        raise SystemExit(
            f"mamo-hf app: error: cannot serve on {args.host}:{args.port} ({first_line(error)})."
        ) from None


def add_image_commands(commands: dict) -> None:
    """The flags of `index`, `search` and `app`."""
    for name, run in (("index", index), ("search", search)):
        command = commands[name]
        command.add_argument("folder", help="the folder of images (searched recursively)")
        if name == "search":
            command.add_argument("text", help="what to look for, e.g. 'a red circle at the top left'")
            command.add_argument("--top-k", type=integer_in(1, 10_000), default=5, help="images to show (default 5)")
            command.add_argument(
                "--rerank",
                type=integer_in(0, 10_000),
                default=0,
                help="re-rank the k best by ITM (default 0: ITC only)",
            )
            command.add_argument("--no-update", action="store_true", help="search the index as it is")
        else:
            command.add_argument(
                "--batch-size", type=integer_in(1, 4096), default=32, help="images per forward (default 32)"
            )
        command.add_argument("--model", required=True, help="a saved MAMO folder (e.g. mamo-demo)")
        command.add_argument("--index", default=None, help="the index file (default: FOLDER/.mamo-index.safetensors)")
        command.set_defaults(run=run)

    app_parser = commands["app"]
    app_parser.add_argument("model", help="a saved MAMO folder (e.g. mamo-demo)")
    app_parser.add_argument(
        "--images",
        default=None,
        help="a folder of images: example inputs (with their captions from a captions.json in it or next to it, as "
        "mamo-hf demo-data writes) and a tab that searches it by text",
    )
    app_parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    app_parser.add_argument("--port", type=integer_in(1, 65535), default=7860, help="port (default 7860)")
    app_parser.set_defaults(run=app)


__all__ = ["add_image_commands", "saved_retrieval_model"]
