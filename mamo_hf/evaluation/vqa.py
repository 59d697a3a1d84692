"""VQA accuracy with the rules of the official evaluation. The answer logic lives with the data
(`mamo_hf.data.vqa_answers`), whose soft scores are also the training targets; this module re-exports it."""

from ..data import vqa_answers
from ..data.vqa_answers import *  # noqa: F403

__all__ = vqa_answers.__all__
