"""The benchmarks as flat scores (`mamo_hf.evaluation.suite`): ARO's macro rule per subset, the fine-grained groups
at the model's image size, the Markdown tables, strict JSON."""

import json

import pytest
from helpers import aro, retrieval_model_and_processor

from mamo_hf.data.compositional import aro_examples
from mamo_hf.evaluation.suite import markdown_report, markdown_table, score_aro, score_finegrained, write_scores


@pytest.fixture(scope="module")
def model_and_processor():
    return retrieval_model_and_processor()


def test_aro_macro_accuracy_leaves_out_small_attribute_pairs_and_the_excluded_relations(model_and_processor, tmp_path):
    model, processor = model_and_processor
    root = aro(tmp_path / "aro")
    relation = score_aro(model, processor, aro_examples(root, "relation"), "relation", batch_size=2, chunk_size=2)
    assert relation["n"] == 3 and relation["macro_groups"] == 2 and relation["groups"]["on"]["n"] == 2
    groups = relation["groups"]
    for kind in ("itc", "itm"):
        mean = (groups["on"][f"{kind}_accuracy"] + groups["left of"][f"{kind}_accuracy"]) / 2
        assert relation[f"{kind}_macro_accuracy"] == pytest.approx(mean)
    excluded = score_aro(model, processor, aro_examples(root, "relation"), "relation", excluded_relations=["on"])
    assert excluded["macro_groups"] == 1 and excluded["itc_macro_accuracy"] == groups["left of"]["itc_accuracy"]
    # VG-Attribution keeps the pairs of 25 cases or more: none here, so no macro accuracy (None, not NaN).
    attribution = score_aro(model, processor, aro_examples(root, "attribution"), "attribution")
    assert attribution["macro_groups"] == 0 and attribution["itm_macro_accuracy"] is None
    assert attribution["chance_accuracy"] == 50.0 and set(attribution["groups"]) == {"red_large", "green_small"}
    json.dumps(attribution, allow_nan=False)


def test_the_finegrained_benchmark_has_one_group_per_template_at_the_model_image_size(model_and_processor):
    model, processor = model_and_processor
    scores = score_finegrained(model, processor, ["relation", "attribute"], examples=2, seed=3)
    assert scores["n"] == 2 and scores["seed"] == 3 and list(scores["groups"]) == ["relation", "attribute"]
    relation = scores["groups"]["relation"]
    assert relation["chance_accuracy"] == 20.0 and "itm_relation" in relation and "itc_colour" in relation
    assert "itm_relation" not in scores["groups"]["attribute"]


SCORES = {
    "n": 4,
    "k": 16,
    "itc_accuracy": 75.0,
    "itc_macro_accuracy": None,
    "itm_accuracy": 50.0,
    "chance_accuracy": 50.0,
    "groups": {"a|b": {"n": 3, "itc_accuracy": 100.0, "itm_accuracy": 200 / 3}, "c": {"n": 1, "itc_accuracy": 0.0}},
}


def test_a_table_has_a_row_per_kind_of_score_and_group_and_a_column_per_metric():
    assert markdown_table("aro/relation", SCORES) == [
        "## aro/relation",
        "",
        "k: 16",
        "",
        "| | n | score | accuracy | macro_accuracy |",
        "|---|---|---|---|---|",
        "| all | 4 | ITC | 75.0 | – |",
        "|  |  | ITM | 50.0 |  |",
        "|  |  | chance | 50.0 |  |",
        "| a\\|b | 3 | ITC | 100.0 |  |",
        "|  |  | ITM | 66.7 |  |",
        "| c | 1 | ITC | 0.0 |  |",
        "",
    ]


def test_the_scores_are_written_as_strict_json_and_markdown_and_a_nan_is_refused(tmp_path):
    report = {"model": "m", "date": "2026-12-08", "command": "mamo-hf eval m", "benchmarks": {"aro": SCORES}}
    json_path, markdown_path = write_scores(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    assert markdown_path.read_text() == markdown_report(report) and "# Scores of m" in markdown_path.read_text()
    report["benchmarks"]["aro"] = {**SCORES, "itc_accuracy": float("nan")}
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_scores(report, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
