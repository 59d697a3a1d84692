"""Training helpers for MAMO pre-training."""

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
        model.update_teacher()


__all__ = ["MamoTeacherUpdateCallback"]
