"""The `mamo-hf` command's entry point. It lives outside the `mamo_hf` package, whose import loads torch and
transformers (seconds), so that `mamo-hf` and `mamo-hf --help` answer at once; every command is then parsed and run
by `mamo_hf.cli`, to which this script hands its parsers (the package never imports this script)."""

import argparse
import contextlib
import os
import signal
import sys

DESCRIPTION = "MAMO vision-language models for transformers."
# Each command and its one-line help, in the order `mamo-hf --help` lists them.
COMMANDS = {
    "demo": "pre-train a tiny MAMO on built-in data for a few minutes and show retrieval before/after",
    "pretrain": "pre-train MAMO on your image-text data (Accelerate)",
    "demo-data": "write the built-in demo data as images + caption JSON",
    "push": "upload a saved MAMO folder (model, processor, code, card)",
    "init-base": "initialise MAMO from a ViT and a BERT checkpoint and save model, processor and tokenizer",
    "index": "embed a folder's images for text search (only the new and changed ones on a re-run)",
    "search": "find the images of an indexed folder that best match a text (ITC, optional ITM re-ranking)",
    "app": "serve an interactive demo of a model in the browser (Gradio): match, zero-shot, Grad-CAM, search",
    "eval": "score a saved model on retrieval, fine-grained, Winoground, ARO and SugarCrepe from local files",
}


def command_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `mamo-hf` parser and one sub-parser per command, still without the commands' own flags."""
    parser = argparse.ArgumentParser(prog="mamo-hf", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    return parser, {name: commands.add_parser(name, help=text) for name, text in COMMANDS.items()}


def main(argv: list[str] | None = None) -> int:
    """Answer `mamo-hf` alone or with `-h`/`--help` here; hand every command, with `command_parsers`, to
    `mamo_hf.cli.main`. From the command line (`argv` None), Ctrl-C is answered by `interrupt_handling`."""
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] in ("-h", "--help"):
        command_parsers()[0].parse_args(arguments)  # prints the help (or the missing-command error) and exits
    handling = interrupt_handling(arguments[0]) if argv is None else contextlib.nullcontext(lambda: None)
    with handling as raise_if_interrupted:
        from mamo_hf.cli import main as run_command

        raise_if_interrupted()  # a Ctrl-C while loading that a library swallowed
        return run_command(arguments, command_parsers)


@contextlib.contextmanager
def interrupt_handling(command: str):
    """Ctrl-C from the command line: the first raises `KeyboardInterrupt`, as Python does (the commands turn it into
    one line and exit status 130, `pretrain` saying which checkpoint to resume), and is remembered: the context
    gives a function that raises it again, for the places where one may have been swallowed by a library (some catch
    every exception while torch loads). A second Ctrl-C ends the process at once. An interrupted loading of the
    package is one line too. SIGTERM (`kill`, a batch scheduler, `docker stop`) is answered alike, with exit status
    143 (128 + SIGTERM, as a shell reports it)."""
    interrupted = []

    def raise_if_interrupted():
        if interrupted:
            raise KeyboardInterrupt

    def on_interrupt(signum, frame):
        if interrupted:
            print(f"\nmamo-hf {command}: interrupted.", file=sys.stderr, flush=True)
            os._exit(128 + interrupted[0])
        interrupted.append(signum)
        # The process is ending: what the interruption leaves half-built (a DataLoader iterator) fails in its
        # finaliser, which Python would print as "Exception ignored in ..." after the one line.
        sys.unraisablehook = lambda unraisable: None
        training = sys.modules.get("mamo_hf.training.loop")
        if training is not None:  # a KeyboardInterrupt raised in a fork handler is lost: the loop also stops
            training.request_stop()
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, on_interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield raise_if_interrupted
    except KeyboardInterrupt:
        if "mamo_hf.cli" in sys.modules and not interrupted:
            raise
        print(f"\nmamo-hf {command}: interrupted.", file=sys.stderr)
        raise SystemExit(128 + (interrupted or [signal.SIGINT])[0]) from None
    except SystemExit as exit_:  # a command's own line for Ctrl-C ends with 130; SIGTERM's status is 143
        if exit_.code == 130 and interrupted:
            raise SystemExit(128 + interrupted[0]) from None
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


if __name__ == "__main__":
    sys.exit(main())
