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
"""MAMO pre-training with `transformers.Trainer`: the callback that gives it the EMA teacher."""

from transformers import TrainerCallback


class MamoTeacherUpdateCallback(TrainerCallback):
    """Give `Trainer` MAMO's EMA teacher: one `update_teacher()` after every optimizer step.

    With gradient accumulation the teacher moves once per optimizer step, not once per micro-batch, as in the paper.

    Example:

    ```python
    >>> trainer = Trainer(model=MamoForPreTraining(config), args=args, train_dataset=dataset,
    ...                   data_collator=collator, callbacks=[MamoTeacherUpdateCallback()])
    ```
    """

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        """One EMA update of the teacher after each optimizer step (not after each accumulated micro-batch)."""
        model.update_teacher()


__all__ = ["MamoTeacherUpdateCallback"]
