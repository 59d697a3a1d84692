"""VQA answers: normalisation, accuracy, soft training targets and the answer vocabulary (docs/method.md §5 "Downstream
tasks"), with the rules of the official VQA evaluation (`vqaEval.py` of the VQA API), re-implemented here. Data code
(the VQA collator's targets) and evaluation code (`mamo_hf.evaluation.vqa`) both use it.

An answer is normalised (`normalize_answer`) before it is compared: lowercase, punctuation removed or turned into
spaces, number words written as digits, articles dropped, contractions given their apostrophes. The accuracy of a
predicted answer among `n` annotators' answers is the mean over the `n` leave-one-annotator-out subsets of
`min(#matches in the subset / 3, 1)`; it only depends on how many annotators gave the answer, which is what
`soft_score` computes, and what `soft_scores` turns into the training targets of `MamoForQuestionAnswering`.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations

import torch

VQA_V2_NUM_ANSWERS = 3129
MATCHES_FOR_FULL_CREDIT = 3  # "an answer is deemed 100% accurate if at least 3 workers provided that exact answer"
OFFICIAL_NUM_ANNOTATORS = 10

NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# Characters that are deleted when they touch a space (or when the answer holds a number like "2,500") and replaced
# by a space otherwise. Apostrophes are kept (contractions), periods have their own rule.
PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_THOUSANDS_COMMA = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# Contractions as written with their apostrophes; spelled without some or all of the apostrophes they are restored
# (`dont` → `don't`, `shouldnt've` → `shouldn't've`). As in the official list, forms whose bare spelling is an
# ordinary word are left out (it's, we'll, we're, we'd, i'll, she'd, he'll, let's, i'd), "cant" and "wont" are not.
CONTRACTIONS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll ma'am mightn't mightn't've might've "
    "mustn't must've needn't not've o'clock oughtn't shan't she'd've she's should've shouldn't shouldn't've "
    "somebody'd somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's something'd "
    "something'd've something'll that's there'd there'd've there're there's they'd they'd've they'll they're "
    "they've wasn't we'd've we've weren't what'll what're what's what've when's where'd where's where've who'd "
    "who'd've who'll who's who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've "
    "you'd you'd've you'll you're you've"
).split()


def _apostrophe_variants(word: str) -> set[str]:
    """`word` with every non-empty subset of its apostrophes removed: "shouldn't've" → {"shouldnt've",
    "shouldn'tve", "shouldntve"}."""
    pieces = word.split("'")
    gaps = range(len(pieces) - 1)
    variants = set()
    for count in range(1, len(pieces)):
        for removed in combinations(gaps, count):
            variant = pieces[0]
            for gap, piece in zip(gaps, pieces[1:]):
                variant += ("" if gap in removed else "'") + piece
            variants.add(variant)
    return variants


CONTRACTION_SPELLINGS = {variant: word for word in CONTRACTIONS for variant in _apostrophe_variants(word)}


def _strip_punctuation(text: str) -> str:
    """The official punctuation rule: each punctuation mark is deleted if it touches a space somewhere in the answer
    (or the answer holds a comma between digits), and replaced by a space otherwise; then periods not followed by a
    digit are deleted (so "yes." → "yes" but "1.5" stays)."""
    delete_all = _THOUSANDS_COMMA.search(text) is not None
    for mark in PUNCTUATION:
        touches_space = f"{mark} " in text or f" {mark}" in text
        text = text.replace(mark, "" if touches_space or delete_all else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", text)


def normalize_answer(text: str) -> str:
    """Normalise an answer as the official VQA evaluation does, so that "Two" and "2", "a dog" and "dog", "yes." and
    "yes", "dont" and "don't" compare equal.

    Steps: newlines and tabs become spaces, surrounding spaces go; punctuation (`_strip_punctuation`); lowercase;
    per word, number words "none", "zero" … "ten" become digits and the articles "a", "an", "the" are dropped;
    contractions written without apostrophes get them back; words are joined by single spaces.
    """
    text = _strip_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTION_SPELLINGS.get(word, word) for word in words if word not in ARTICLES)


def soft_score(count: int, num_annotators: int = OFFICIAL_NUM_ANNOTATORS) -> float:
    """The VQA accuracy of an answer that `count` of `num_annotators` annotators gave, i.e. its soft training target.

    Leaving out one of the `count` annotators who gave it leaves `count - 1` matches, leaving out one of the others
    leaves `count`; with `t = 3` (`MATCHES_FOR_FULL_CREDIT`) and `n = num_annotators`:

        score = [count · min((count − 1) / t, 1) + (n − count) · min(count / t, 1)] / n

    which for 10 annotators is 0, 0.3, 0.6, 0.9 and 1 for 0, 1, 2, 3 and ≥ 4 of them. With a single annotator there
    is no one to leave out: the reference answer counts as unanimous (as if all 10 gave it), so the score is 1 for
    the reference and 0 otherwise, the usual convention for single-answer data such as easy-VQA or GQA.

    Raises:
        ValueError: unless `0 <= count <= num_annotators` and `num_annotators >= 1`.
    """
    if num_annotators < 1 or not 0 <= count <= num_annotators:
        raise ValueError(
            f"Need 0 <= count <= num_annotators and num_annotators >= 1, got {count} of {num_annotators}."
        )
    if num_annotators == 1:
        return soft_score(count * OFFICIAL_NUM_ANNOTATORS, OFFICIAL_NUM_ANNOTATORS)
    credit = MATCHES_FOR_FULL_CREDIT
    left_out_matches = count * min((count - 1) / credit, 1.0) if count else 0.0
    return (left_out_matches + (num_annotators - count) * min(count / credit, 1.0)) / num_annotators


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one predicted answer against the annotators' answers (both normalised), in [0, 1]:

        acc = mean over the n subsets of n − 1 annotators of min(#annotators in the subset who gave it / 3, 1)

    computed in closed form by `soft_score` (see there for a single annotator).

    Raises:
        ValueError: if `answers` is empty.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one annotator answer.")
    prediction = normalize_answer(prediction)
    return soft_score(sum(normalize_answer(answer) == prediction for answer in answers), len(answers))


def vqa_accuracy_of_predictions(predicted: Sequence[str], answer_lists: Sequence[Sequence[str]]) -> float:
    """Mean `vqa_accuracy` of predicted answers, in percent: `100 · mean_i acc(predicted_i, answers_i)`.

    Raises:
        ValueError: if the two sequences differ in length or are empty.
    """
    if len(predicted) != len(answer_lists) or not predicted:
        raise ValueError(
            f"Need as many predictions as answer lists (> 0), got {len(predicted)} and {len(answer_lists)}."
        )
    return 100.0 * sum(map(vqa_accuracy, predicted, answer_lists)) / len(predicted)


def soft_scores(answer_lists: Sequence[Sequence[str]], label2id: dict[str, int]) -> torch.FloatTensor:
    """Soft VQA targets `[N, num_answers]`: entry `(i, a)` is `soft_score(#annotators of question i who gave a, n_i)`.

    Answers are normalised before they are looked up in `label2id` (whose keys are normalised answers, as
    `build_answer_vocabulary` makes them); answers outside it contribute nothing. A question without answers gets
    a row of zeros.
    """
    labels = torch.zeros(len(answer_lists), len(label2id))
    for row, answers in enumerate(answer_lists):
        for answer, count in Counter(map(normalize_answer, answers)).items():
            if answer in label2id:
                labels[row, label2id[answer]] = soft_score(count, len(answers))
    return labels


def build_answer_vocabulary(
    answer_lists: Iterable[Sequence[str]], max_answers: int = VQA_V2_NUM_ANSWERS
) -> tuple[dict[int, str], dict[str, int]]:
    """The `max_answers` most frequent normalised answers as `(id2label, label2id)`, most frequent first.

    The frequency of an answer is the number of questions for which at least one annotator gave it; ties are broken
    alphabetically, so the vocabulary does not depend on the order of the questions. Empty answers are left out.
    """
    frequency = Counter(answer for answers in answer_lists for answer in set(map(normalize_answer, answers)) if answer)
    ranked = sorted(frequency, key=lambda answer: (-frequency[answer], answer))[:max_answers]
    return dict(enumerate(ranked)), {answer: index for index, answer in enumerate(ranked)}


__all__ = [
    "build_answer_vocabulary",
    "normalize_answer",
    "soft_score",
    "soft_scores",
    "vqa_accuracy",
    "vqa_accuracy_of_predictions",
]
