"""The model of a run (`mamo_hf.training.model`): an `--init` checkpoint whose special token ids lie outside its
vocabulary is refused, naming the flag."""

import pytest
from helpers import tiny_run

from mamo_hf.training import InvalidArgumentError, pretrain

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_special_token_ids_outside_the_vocabulary_are_refused(tmp_path):
    from mamo_hf import MamoConfig, MamoForPreTraining, MamoModel

    ids = {"pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "mask_token_id": 40}
    with pytest.raises(ValueError, match="`text_config.mask_token_id` \\(40\\) must be a token id of the vocabulary"):
        MamoForPreTraining(MamoConfig.tiny(vocab_size=30, special_token_ids=ids))
    MamoModel(MamoConfig.tiny(vocab_size=30, special_token_ids=ids)).save_pretrained(tmp_path / "bad-ids")
    with pytest.raises(InvalidArgumentError, match="--init .*bad-ids: `text_config.mask_token_id` \\(40\\)"):
        pretrain(tiny_run(tmp_path, init=str(tmp_path / "bad-ids")))
