"""`mamo-hf eval` (`mamo_hf.cli.evaluate`): the five benchmarks scored from local files in their published formats,
strict JSON and a Markdown table out, scores equal to the library's; every bad input one line, nothing written."""

import json
import re
import shlex

import pytest
import torch
from helpers import (
    REPOSITORY,
    aro,
    karpathy_coco,
    one_line_error,
    run_main,
    save_retrieval_model,
    sugarcrepe,
    winoground,
)

from mamo_hf import MamoForImageTextRetrieval, MamoModel, MamoProcessor
from mamo_hf.cli import build_parser
from mamo_hf.data.compositional import aro_examples, sugarcrepe_examples, winoground_examples
from mamo_hf.data.finegrained import chance_accuracy, finegrained_examples
from mamo_hf.data.standard import karpathy_retrieval_records, karpathy_retrieval_split, write_json
from mamo_hf.evaluation.finegrained import evaluate_finegrained
from mamo_hf.evaluation.retrieval import evaluate_retrieval
from mamo_hf.evaluation.standard import evaluate_choices, evaluate_winoground
from mamo_hf_cli import command_parsers, main


def strict_json(text: str):
    """JSON as the standard defines it: `NaN`, `Infinity` and `-Infinity` are refused."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def files(tmp_path):
    """A saved tiny retrieval model and each benchmark's files, as the flags that name them."""
    data, images = sugarcrepe(tmp_path / "sugarcrepe")
    return {
        "model": save_retrieval_model(tmp_path),
        "retrieval": ["--karpathy", str(karpathy_coco(tmp_path / "coco")), "--image-root", str(tmp_path / "coco")],
        "finegrained": ["--finegrained-examples", "3"],
        "winoground": ["--winoground-root", str(winoground(tmp_path / "winoground"))],
        "aro": ["--aro-root", str(aro(tmp_path / "aro"))],
        "sugarcrepe": ["--sugarcrepe-root", str(data), "--sugarcrepe-image-root", str(images)],
    }


def by_kind(scores: dict, metrics: dict, names) -> None:
    """`scores["<kind>_<name>"]` equals `metrics[kind][name]` for both kinds and every name."""
    for kind in ("itc", "itm"):
        for name in names:
            assert scores[f"{kind}_{name}"] == pytest.approx(metrics[kind][name]), (kind, name)


def test_the_command_scores_the_five_benchmarks_as_the_library_does_into_strict_json_and_markdown(files, tmp_path):
    benchmarks = ["retrieval", "finegrained", "winoground", "aro", "sugarcrepe"]
    flags = [flag for name in benchmarks for flag in files[name]]
    output = tmp_path / "results"
    arguments = ["eval", str(files["model"]), "--benchmark", *benchmarks, *flags, "--output-dir", str(output)]
    assert main([*arguments, "--batch-size", "4"]) == 0
    report = strict_json((output / "scores.json").read_text())
    assert report["model"] == str(files["model"]) and report["command"].startswith("mamo-hf eval ")
    assert report["device"] == "cpu" and report["date"][:2] == "20"
    scores = report["benchmarks"]
    assert list(scores) == ["retrieval", "finegrained", "winoground", "aro/relation", "aro/attribution", "sugarcrepe"]
    assert set(report["seconds"]) == set(scores)

    model = MamoForImageTextRetrieval.from_pretrained(files["model"]).eval()
    processor = MamoProcessor.from_pretrained(files["model"])
    root = tmp_path / "coco"
    split = karpathy_retrieval_split(root / "dataset_coco.json", root)
    metrics = evaluate_retrieval(
        model, processor, split.images, split.texts, split.image_to_texts, split.text_to_image
    )
    assert scores["retrieval"]["n"] == 2 and scores["retrieval"]["n_texts"] == 10 and scores["retrieval"]["k"] == 256
    by_kind(scores["retrieval"], metrics, metrics["itc"])

    for template in ("list", "relation", "attribute"):
        examples = finegrained_examples(3, seed=12345, image_size=32, template=template)
        expected = evaluate_finegrained(model, processor, examples)
        group = scores["finegrained"]["groups"][template]
        assert group == pytest.approx({"n": 3, **expected, "chance_accuracy": chance_accuracy(template)})

    metrics = evaluate_winoground(model, processor, winoground_examples(tmp_path / "winoground"))
    by_kind(scores["winoground"], metrics, ("text", "image", "group"))
    assert scores["winoground"]["groups"]["Object"]["n"] == 2 and scores["winoground"]["chance_group"] == 100 / 6
    by_kind(
        scores["winoground"]["groups"]["Relation"],
        {kind: metrics[kind]["by_tag"]["Relation"] for kind in ("itc", "itm")},
        ("text", "image", "group"),
    )

    for subset, min_group_size in (("relation", 1), ("attribution", 25)):
        metrics = evaluate_choices(
            model, processor, aro_examples(tmp_path / "aro", subset), min_group_size=min_group_size
        )
        by_kind(scores[f"aro/{subset}"], metrics, ("accuracy", "macro_accuracy"))
    # VG-Attribution's pairs have fewer than 25 cases here: no macro accuracy, and the JSON says null (it said NaN)
    assert scores["aro/attribution"]["itc_macro_accuracy"] is None and scores["aro/attribution"]["macro_groups"] == 0
    data, images = tmp_path / "sugarcrepe" / "data", tmp_path / "sugarcrepe" / "val2017"
    metrics = evaluate_choices(model, processor, sugarcrepe_examples(data, images))
    by_kind(scores["sugarcrepe"], metrics, ("accuracy", "macro_accuracy"))
    assert scores["sugarcrepe"]["groups"]["swap_att"]["n"] == 2

    markdown = (output / "scores.md").read_text()
    for name in scores:
        assert f"\n## {name}\n" in markdown
    assert "| | n | score | text | image | group |" in markdown and "| all | 3 | ITC |" in markdown
    assert "| Relation | 1 | ITC |" in markdown and "| all | 2 | ITC | " in markdown  # ARO's attribution: a dash


def test_an_albef_evaluation_file_scores_as_the_karpathy_split_it_was_converted_from(files, tmp_path):
    coco = tmp_path / "coco"
    albef = write_json(karpathy_retrieval_records(coco / "dataset_coco.json"), tmp_path / "coco_test.json")
    reports = {}
    karpathy = ["--karpathy", str(coco / "dataset_coco.json")]
    for name, flags in (("karpathy", karpathy), ("albef", ["--retrieval-file", str(albef)])):
        arguments = ["eval", str(files["model"]), "--benchmark", "retrieval", *flags, "--image-root", str(coco)]
        assert main([*arguments, "--k", "1", "--output-dir", str(tmp_path / name)]) == 0
        reports[name] = strict_json((tmp_path / name / "scores.json").read_text())["benchmarks"]["retrieval"]
    assert reports["albef"] == reports["karpathy"] and reports["albef"]["k"] == 1


def test_a_bare_mamo_model_is_scored_by_itc_only_and_refused_for_the_finegrained_benchmark(files, tmp_path, capsys):
    bare = tmp_path / "bare"
    MamoModel.from_pretrained(files["model"]).save_pretrained(bare)
    MamoProcessor.from_pretrained(files["model"]).save_pretrained(bare)
    output = tmp_path / "results"
    arguments = ["eval", str(bare), "--benchmark", "winoground", *files["winoground"], "--output-dir", str(output)]
    assert main(arguments) == 0
    assert "no trained ITM head (a bare MamoModel): ITC scores only" in capsys.readouterr().err
    scores = strict_json((output / "scores.json").read_text())["benchmarks"]["winoground"]
    assert "itc_text" in scores and not any(key.startswith("itm_") for key in scores)
    code, stderr = run_main(
        capsys, "eval", str(bare), "--benchmark", "finegrained", "--output-dir", str(tmp_path / "f")
    )
    assert code != 0
    one_line_error(None, stderr, "mamo-hf eval: error: MODEL", "--benchmark finegrained needs it")


def test_every_bad_input_is_one_line_and_nothing_is_written(files, tmp_path, capsys):
    model = str(files["model"])
    (tmp_path / "a-file").write_text("not a folder")
    broken = winoground(tmp_path / "broken")
    (broken / "examples.jsonl").write_text("{oops\n")
    no_images = aro(tmp_path / "no-images")
    for path in (no_images / "images").iterdir():
        path.unlink()
    cases = [
        (["eval", str(tmp_path), "--benchmark", "finegrained"], ["MODEL", "not a saved MAMO model"]),
        (["eval", model, "--benchmark", "imagenet"], ["argument --benchmark: invalid choice: 'imagenet'"]),
        (["eval", model, "--benchmark", "winoground"], ["--benchmark winoground needs --winoground-root"]),
        (["eval", model, "--benchmark", "retrieval"], ["needs one of --retrieval-file and --karpathy"]),
        (["eval", model, "--benchmark", "retrieval", "--karpathy", "k.json"], ["--karpathy needs --image-root"]),
        (["eval", model, "--benchmark", "finegrained", *files["aro"]], ["--aro-root is a flag of --benchmark aro"]),
        (["eval", model, "--benchmark", "finegrained", "--limit", "3"], ["--limit applies to winoground"]),
        (
            ["eval", model, "--benchmark", "winoground", "--winoground-root", str(tmp_path)],
            ["examples.jsonl: no such"],
        ),
        (["eval", model, "--benchmark", "winoground", "--winoground-root", str(broken)], ["line 1: not valid JSON"]),
        (["eval", model, "--benchmark", "aro", "--aro-root", str(no_images)], ["aro/relation: ", "2315375.jpg"]),
        (
            ["eval", model, "--benchmark", "retrieval", "--retrieval-file", str(tmp_path / "a-file")],
            ["retrieval: ", "a-file: not valid JSON"],
        ),
        (["eval", model, "--benchmark", "finegrained", "--device", "meta"], ["--device meta: use cpu, cuda"]),
        (["eval", model, "--benchmark", "finegrained", "--device", "gpu!"], ["--device gpu!: not a device"]),
    ]
    if not torch.cuda.is_available():
        cases.append((["eval", model, "--benchmark", "finegrained", "--device", "cuda"], ["no such CUDA GPU"]))
    output = tmp_path / "results"
    for arguments, expected in cases:
        code, stderr = run_main(capsys, *arguments, "--output-dir", str(output))
        assert code != 0, arguments
        one_line_error(None, stderr, "mamo-hf eval: error: ", *expected)
        assert not output.exists(), arguments
    code, stderr = run_main(
        capsys, "eval", model, "--benchmark", "finegrained", "--output-dir", str(tmp_path / "a-file")
    )
    one_line_error(None, stderr, "--output-dir", "a-file is a file; give a folder")


def test_the_readme_eval_commands_parse():
    """Each `mamo-hf eval` command of the README (continued lines joined, comments dropped) is one the parser takes."""
    text = (REPOSITORY / "README.md").read_text().replace("\\\n", " ")
    commands = [line.split("  #")[0] for line in re.findall(r"^mamo-hf eval .*$", text, flags=re.MULTILINE)]
    assert len(commands) >= 4
    parser = build_parser(command_parsers)
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert args.model == "mamo-demo" and args.benchmark, command
