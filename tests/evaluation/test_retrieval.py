"""The retrieval protocol (`mamo_hf.evaluation.retrieval`) against brute-force references, on one process and sharded
over two."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import WORKERS, tiny_config, tiny_tokenizer
from PIL import Image

from mamo_hf import MamoForImageTextRetrieval, MamoImageProcessorPil, MamoProcessor
from mamo_hf.evaluation.retrieval import encode_corpus, itm_scores, recall_metrics, retrieval_metrics


@pytest.fixture(scope="module")
def corpus_data():
    """6 images with 2 captions each; caption 11 repeats caption 0 word for word (a duplicate across images)."""
    generator = torch.Generator().manual_seed(1)
    images = [
        Image.fromarray(torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8).numpy())
        for _ in range(6)
    ]
    words = tiny_tokenizer().get_vocab()
    vocabulary = [word for word in words if not word.startswith("[")]
    texts = [
        " ".join(vocabulary[int(i)] for i in torch.randint(len(vocabulary), (6,), generator=generator))
        for _ in range(12)
    ]
    texts[11] = texts[0]
    image_to_texts = [[2 * image, 2 * image + 1] for image in range(6)]
    text_to_image = [text // 2 for text in range(12)]
    return images, texts, image_to_texts, text_to_image


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MamoForImageTextRetrieval(tiny_config()).eval()


def brute_force_ranks(scores: torch.Tensor, positives: list[list[int]]) -> torch.Tensor:
    """Best rank of a ground truth per row of a full score matrix (ties in favour of the ground truth)."""
    ranks = []
    for row, columns in enumerate(positives):
        best = max(scores[row, column].item() for column in columns)
        ranks.append(sum(1 for value in scores[row].tolist() if value > best))
    return torch.tensor(ranks)


def processor():
    return MamoProcessor(
        image_processor=MamoImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tiny_tokenizer()
    )


def test_itc_only_equals_ranking_by_the_similarity_matrix(model, corpus_data):
    images, texts, image_to_texts, text_to_image = corpus_data
    corpus = encode_corpus(model, processor(), images, texts, batch_size=4)
    similarity = corpus.image_embeds @ corpus.text_embeds.t()
    expected = recall_metrics(
        brute_force_ranks(similarity, image_to_texts),
        brute_force_ranks(similarity.t(), [[image] for image in text_to_image]),
    )
    assert retrieval_metrics(model, corpus, image_to_texts, text_to_image, k=4)["itc"] == expected
    # A bare MamoModel has no ITM head: ITC only.
    assert set(retrieval_metrics(model.mamo, corpus, image_to_texts, text_to_image)) == {"itc"}


def test_itm_reranking_with_k_covering_the_corpus_equals_brute_force_itm(model, corpus_data):
    # The two sides score the same pairs in different batches, so their ITM scores differ by rounding noise; an
    # untrained model's near-ties (and the exact tie of a duplicate caption) could then rank differently. In
    # float64, without the duplicate, no two scores are within that noise. (Ties: the ITC test and the next ones.)
    images, texts, image_to_texts, text_to_image = corpus_data
    texts = texts[:11] + [" ".join(reversed(texts[0].split()))]
    model = copy.deepcopy(model).double()
    corpus = encode_corpus(model, processor(), images, texts, batch_size=4)
    every_image = torch.arange(6).repeat_interleave(12)
    every_text = torch.arange(12).repeat(6)
    full = itm_scores(model, corpus, every_image, every_text, batch_size=7).view(6, 12)
    expected = recall_metrics(
        brute_force_ranks(full, image_to_texts), brute_force_ranks(full.t(), [[image] for image in text_to_image])
    )
    for chunk in (1, 5, 100):
        metrics = retrieval_metrics(
            model, corpus, image_to_texts, text_to_image, k=12, query_chunk_size=chunk, itm_batch_size=5
        )
        assert metrics["itm"] == pytest.approx(expected)


def test_itm_scores_of_the_corpus_equal_the_head_on_the_pairs(model, corpus_data):
    images, texts, _, _ = corpus_data
    batch = processor()(images=images[:3], text=texts[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        direct = model(**batch).itm_scores
    corpus = encode_corpus(model, processor(), images, texts)
    torch.testing.assert_close(
        itm_scores(model, corpus, torch.arange(3), torch.arange(3)), direct, atol=1e-5, rtol=1e-5
    )


def test_recall_metrics_on_known_ranks():
    metrics = recall_metrics(torch.tensor([0, 1, 4, 9, 20]), torch.tensor([0, 0, 5, 30]))
    assert metrics["txt_r1"] == 20.0 and metrics["txt_r5"] == 60.0 and metrics["txt_r10"] == 80.0
    assert metrics["img_r1"] == 50.0 and metrics["img_r5"] == 50.0 and metrics["img_r10"] == 75.0
    assert metrics["r_mean"] == pytest.approx((160 / 3 + 175 / 3) / 2)


def test_duplicate_captions_and_ties_count_for_the_ground_truth():
    # Two identical features: the ground truth ties with another candidate and still ranks first.
    scores = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]])
    assert brute_force_ranks(scores, [[1], [2]]).tolist() == [0, 0]


def test_two_processes_shard_the_evaluation_and_agree_with_one(tmp_path):
    workers = WORKERS
    sys.path.insert(0, str(workers))
    from retrieval_two_ranks import evaluate

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        str(workers / "retrieval_two_ranks.py"),
        str(tmp_path / "metrics.json"),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two_processes = json.loads((tmp_path / "metrics.json").read_text())
    one_process = evaluate()
    assert two_processes.keys() == one_process.keys() == {"itc", "itm"}
    for kind in one_process:
        assert two_processes[kind] == pytest.approx(one_process[kind])
