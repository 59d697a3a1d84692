"""`MamoTeacherUpdateCallback` (`mamo_hf.training.callbacks`): `Trainer` trains `MamoForPreTraining` without labels
and, with the callback, updates the teacher once per optimizer step."""

import torch
from helpers import build, random_pairs, teacher_matches_student
from transformers import Trainer, TrainingArguments

from mamo_hf.training import MamoTeacherUpdateCallback


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, config, size=16):
        self.batch = random_pairs(config, batch_size=size, seed=11)

    def __len__(self):
        return self.batch["input_ids"].shape[0]

    def __getitem__(self, index):
        return {name: value[index] for name, value in self.batch.items()}


def test_trainer_trains_without_labels_and_updates_the_teacher_once_per_optimizer_step(tmp_path):
    model = build()
    updates = []
    original = model.update_teacher
    model.update_teacher = lambda: updates.append(1) or original()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=3,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=PairDataset(model.config), callbacks=[MamoTeacherUpdateCallback()]
    )
    result = trainer.train()
    assert len(updates) == 3  # 3 optimizer steps of 2 micro-batches each
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not teacher_matches_student(model)
