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
"""The `mamo-hf` commands: `demo`, `pretrain`, `demo-data`, `push`, `init-base`, `index`, `search`, `app` and `eval`.

The entry script `mamo_hf_cli` (outside the package, so that `mamo-hf --help` answers without loading torch) names the
commands and builds their parsers; `main` here adds each command's flags (`pretraining`, `models`, `images`,
`evaluate`) and runs it. Run `mamo-hf <command> --help` for the options of each command.
"""

import argparse
import sys

from ..errors import PretrainingError
from .evaluate import add_evaluation_command
from .images import add_image_commands
from .models import add_model_commands
from .pretraining import DEMO_SETTINGS, add_pretraining_commands, yaml_settings


def build_parser(command_parsers, settings: dict | None = None) -> argparse.ArgumentParser:
    """The `mamo-hf` parser: `command_parsers()` (of the entry script `mamo_hf_cli`) gives the parser and one
    sub-parser per command, to which each command's flags are added here; `settings` (from `--config`) are defaults
    of the pre-training flags."""
    parser, commands = command_parsers()
    add_pretraining_commands(commands, settings or {})
    add_model_commands(commands)
    add_image_commands(commands)
    add_evaluation_command(commands)
    return parser


def main(argv: list[str], command_parsers) -> int:
    """Run the `mamo-hf` command `argv` with the parsers of `command_parsers` (the entry script's: `mamo_hf_cli.main`
    calls this); YAML files given with `--config` set defaults."""
    args = build_parser(command_parsers, yaml_settings(argv)).parse_args(argv)
    args.command_line = ["mamo-hf", *argv]  # as typed, for the reports that record it (`eval`)
    try:
        args.run(args)
    except PretrainingError as error:
        print(f"mamo-hf {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = ["DEMO_SETTINGS", "build_parser", "main"]
