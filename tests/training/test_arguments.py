"""`PretrainingArguments` and the facts declared beside each field (`mamo_hf.training.arguments`): every field says
whether it defines the run, the resume check and the model card take their lists from those facts, and
`value_problem` words a bad value from the field's type, bounds and choices as the validation and `--config` errors
print it."""

import dataclasses

import pytest

from mamo_hf.training import PretrainingArguments
from mamo_hf.training.arguments import (
    CARD_ARGUMENTS,
    FIELD_TYPES,
    RUN_DEFINING_ARGUMENTS,
    ArgumentFacts,
    facts,
    fits_type,
    flag,
    type_name,
    value_problem,
)


def test_every_field_declares_its_help_and_its_facts():
    """A field made without `argument(...)` would escape the resume check and the value checks: this fails first."""
    fields = dataclasses.fields(PretrainingArguments)
    assert [field.name for field in fields] == list(FIELD_TYPES)
    for field in fields:
        assert isinstance(field.metadata.get("facts"), ArgumentFacts), field.name
        assert field.metadata.get("help"), field.name


def test_the_resume_check_and_the_card_list_the_fields_their_facts_name_in_field_order():
    assert list(RUN_DEFINING_ARGUMENTS) == [name for name in FIELD_TYPES if facts(name).defines_run]
    assert list(CARD_ARGUMENTS) == [name for name in FIELD_TYPES if facts(name).on_card]
    assert {"model_config", "train_file", "demo_pairs", "batch_size", "learning_rate", "seed"} <= set(
        RUN_DEFINING_ARGUMENTS
    )
    # How long a run goes and where it writes may change when it is resumed.
    assert not {"max_steps", "output_dir", "resume", "checkpoint_every", "num_workers", "report_to"} & set(
        RUN_DEFINING_ARGUMENTS
    )
    assert {"model", "init", "batch_size", "learning_rate", "seed"} <= set(CARD_ARGUMENTS)


def test_every_default_passes_its_own_checks():
    for field in dataclasses.fields(PretrainingArguments):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue
        assert value_problem(field.name, default) is None, field.name


def test_a_flag_is_the_field_name_with_dashes():
    assert flag("batch_size") == "--batch-size"
    assert flag("gradient_accumulation_steps") == "--gradient-accumulation-steps"
    assert flag("seed") == "--seed"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("batch_size", 0, "must be an integer from 1 to 65536, got 0."),
        ("batch_size", True, "must be an integer from 1 to 65536, got True."),
        ("warmup_steps", 2.5, "must be an integer from 0 to 1000000000, got 2.5."),
        ("image_size", 100000, "must be an integer from 16 to 4096, got 100000."),
        ("seed", -1, "must be an integer from 0 to 4294967295, got -1."),
        ("learning_rate", float("nan"), "must be a finite number > 0, got nan."),
        ("learning_rate", 0, "must be a finite number > 0, got 0."),
        ("min_learning_rate", -1.0, "must be a finite number >= 0, got -1.0."),
        ("mixed_precision", "fp8", "must be no, bf16 or fp16, got 'fp8'."),
        ("report_to", ["wandb"], "must be some of tensorboard, csv, got ['wandb']."),
        ("augment", "no", "must be bool, got 'no'."),
        ("model_config", 5, "must be dict, got 5."),
        ("train_file", 5, "must be list[str], got 5."),
        ("image_size", None, None),
        ("report_to", [], None),
        ("learning_rate", 1e-4, None),
        ("batch_size", 8, None),
    ],
)
def test_value_problem_words_a_bad_value_from_the_type_bounds_and_choices(name, value, expected):
    assert value_problem(name, value) == expected


@pytest.mark.parametrize(
    ("value", "hint", "fits"),
    [
        (3, float, True),
        (3.5, int, False),
        (True, int, False),
        (True, bool, True),
        (None, int | None, True),
        (None, int, False),
        (["a", "b"], list[str], True),
        (["a", 1], list[str], False),
        ("a", list[str], False),
        ({"mim_weight": 0.5}, dict, True),
    ],
)
def test_fits_type_tells_the_types_a_yaml_file_can_get_wrong(value, hint, fits):
    assert fits_type(value, hint) is fits


def test_type_names_read_as_written():
    assert type_name(FIELD_TYPES["batch_size"]) == "int"
    assert type_name(FIELD_TYPES["train_file"]) == "list[str]"
    assert type_name(FIELD_TYPES["init"]) == "str | None"
