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
"""Model cards and Hub publishing for MAMO checkpoints.

Every folder that the training scripts save gets a `README.md` model card (`write_model_card`) with Hub metadata:
library, tags, datasets, base model, and the metrics measured by that run. `push_to_hub` uploads a saved folder —
weights, processor, the model code (so that `trust_remote_code=True` works without `mamo_hf`) and the card — in one
commit, through transformers' shared `HfApi`.
"""

import json
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import CommitOperationAdd, EvalResult, ModelCard, ModelCardData, constants, get_token

from .errors import first_line

PAPER_URL = "https://arxiv.org/abs/2210.04183"
TAGS = ["mamo", "vision-language", "multimodal", "masked-modeling", "custom_code"]
CITATION = """@inproceedings{zhao2023mamo,
  title     = {{MAMO}: Fine-Grained Vision-Language Representations Learning with Masked Multimodal Modeling},
  author    = {Zhao, Zijia and Guo, Longteng and He, Xingjian and Shao, Shuai and Yuan, Zehuan and Liu, Jing},
  booktitle = {Proceedings of the 46th International ACM SIGIR Conference on Research and Development in
               Information Retrieval (SIGIR)},
  year      = {2023},
  eprint    = {2210.04183},
  archivePrefix = {arXiv}
}"""
# The pipeline of transformers v5 that each class serves (the card's `pipeline_tag`); VQA and NLVR2 heads have none.
PIPELINE_TAGS = {
    "MamoModel": "zero-shot-image-classification",
    "MamoForPreTraining": "zero-shot-image-classification",
    "MamoForImageTextRetrieval": "zero-shot-image-classification",
}
# Files of a training folder that are not part of a model repository.
NOT_UPLOADED = ("checkpoint-*", "logs", "runs", ".*", "training_args.bin", "*.tmp")


@dataclass
class MeasuredResult:
    """One number a run measured, for the card's table and its `model-index` metadata.

    Args:
        task: a Hub task type, e.g. `"image-text-retrieval"`, `"visual-question-answering"`.
        dataset: what it was measured on, e.g. `"easy-vqa test"`, `"held-out demo pairs"`.
        metric: the metric's type, an identifier the Hub knows: `"accuracy"`, `"recall"`.
        value: the number (percent for accuracies and recalls).
        name: what exactly was measured, in words, e.g. `"R@1, text retrieval, ITC"` (default: `metric`).
    """

    task: str
    dataset: str
    metric: str
    value: float
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.metric


def retrieval_results(metrics: dict, dataset: str) -> list[MeasuredResult]:
    """`MeasuredResult`s of `mamo_hf.evaluation.retrieval` metrics (`{"itc": {...}, "itm": {...}}`): R@1/R@5 of
    text and image retrieval for each ranking."""
    results = []
    for ranking, values in metrics.items():
        for key, direction in (("txt", "text retrieval"), ("img", "image retrieval")):
            for recall in (1, 5):
                results.append(
                    MeasuredResult(
                        "image-text-retrieval",
                        dataset,
                        "recall",
                        round(values[f"{key}_r{recall}"], 2),
                        name=f"R@{recall}, {direction}, {ranking.upper()}",
                    )
                )
    return results


# A Hub repository id: `name` or `owner/name`.
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def hub_base_model(base_model: str | list[str] | None) -> str | list[str] | None:
    """The card's `base_model`: the Hub repository ids among the given ones; a local folder is left out (its path
    means nothing on the Hub, which rejects it)."""
    models = [base_model] if isinstance(base_model, str) else list(base_model or [])
    kept = [model for model in models if not Path(model).exists() and REPO_ID.match(model)]
    if not kept:
        return None
    return kept[0] if isinstance(base_model, str) else kept


def create_model_card(
    model_name: str,
    summary: str,
    results: list[MeasuredResult] = (),
    datasets: list[str] = (),
    base_model: str | list[str] | None = None,
    training: dict | None = None,
    pipeline_tag: str | None = None,
    model_class: str = "MamoModel",
) -> ModelCard:
    """A model card for a MAMO checkpoint: Hub metadata (library, tags, datasets, base model, `model-index` with the
    measured results) and a body with how to load it, the results, the training settings and the citation.

    `model_name` is also the name the usage snippet loads; `push_to_hub` replaces it with the repository id.
    `model_class` is the checkpoint's class (its `config.architectures[0]`): the snippet loads it, so that a task
    head is kept, and the `pipeline_tag` defaults to the pipeline of transformers that serves it (`PIPELINE_TAGS`).
    """
    if pipeline_tag is None:
        pipeline_tag = PIPELINE_TAGS.get(model_class)
    base_model = hub_base_model(base_model)
    eval_results = [
        EvalResult(
            task_type=result.task,
            dataset_type=result.dataset.replace(" ", "-"),
            dataset_name=result.dataset,
            metric_type=result.metric,
            metric_name=result.label,
            metric_value=result.value,
        )
        for result in results
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license="apache-2.0",
        tags=TAGS + sorted({result.task for result in results} - set(TAGS)),  # and the tasks measured
        datasets=list(datasets) or None,
        metrics=sorted({result.metric for result in results}) or None,
        base_model=base_model,
        pipeline_tag=pipeline_tag,
        eval_results=eval_results or None,
    )
    sections = [
        f"# {model_name}",
        summary,
        f"MAMO ([paper]({PAPER_URL})) learns fine-grained vision-language representations with masked multimodal "
        "modeling: an image encoder (ViT), a text encoder and a merged-attention fusion encoder (BERT), pre-trained "
        f"with {_objectives_in_words()}. This checkpoint was made with the `mamo_hf` package.",
        _usage_section(model_name, model_class),
    ]
    if results:
        rows = "\n".join(f"| {r.task} | {r.dataset} | {r.label} | {r.value:g} |" for r in results)
        sections.append(
            "## Results measured by this run\n\n| task | data | metric | value |\n|---|---|---|---|\n" + rows
        )
    if training:
        settings = "\n".join(f"- `{name}`: {value}" for name, value in training.items())
        sections.append("## Training\n\n" + settings)
    sections.append(f"## Citation\n\n```bibtex\n{CITATION}\n```")
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def _objectives_in_words() -> str:
    """The pre-training objectives of the table, in words: "image-text contrastive learning (ITC), ... and ..."."""
    from .modeling_mamo import PRETRAINING_OBJECTIVES

    titles = [row.title for row in PRETRAINING_OBJECTIVES]
    return ", ".join(titles[:-1]) + " and " + titles[-1]


def _usage_section(model_id: str, model_class: str) -> str:
    from .modeling_mamo import MAMO_AUTO_MAP

    auto = next(name for name, reference in MAMO_AUTO_MAP.items() if reference == f"modeling_mamo.{model_class}")
    head = (
        ""
        if model_class == "MamoModel"
        else f" Load it with its head, `{model_class}` (`AutoModel` keeps the encoders only)."
    )
    return f"""## How to use

This checkpoint is a `{model_class}`.{head} With `mamo_hf` installed (`pip install mamo-hf`):

```python
from mamo_hf import {model_class}, MamoProcessor

model = {model_class}.from_pretrained("{model_id}")
processor = MamoProcessor.from_pretrained("{model_id}")
```

Without it, the repository's own code is used, through the Auto class that its `config.json` maps to `{model_class}`:

```python
from transformers import {auto}, AutoProcessor

model = {auto}.from_pretrained("{model_id}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{model_id}", trust_remote_code=True)
```"""


def write_model_card(folder: str | Path, **card_arguments) -> Path:
    """Write `create_model_card(**card_arguments)` as `folder/README.md`; returns the path. The card's
    `model_class` defaults to the saved model's (`config.json`'s `architectures`)."""
    path = Path(folder) / "README.md"
    config = Path(folder) / "config.json"
    if "model_class" not in card_arguments and config.is_file():
        architectures = json.loads(config.read_text()).get("architectures") or ["MamoModel"]
        card_arguments["model_class"] = architectures[0]
    create_model_card(**card_arguments).save(path)
    return path


def _files_to_upload(folder: Path) -> list[Path]:
    """Every file of a saved folder that belongs in a model repository (not checkpoints, logs or hidden files)."""

    def excluded(path: Path) -> bool:
        return any(fnmatch(part, pattern) for part in path.relative_to(folder).parts for pattern in NOT_UPLOADED)

    return sorted(path for path in folder.rglob("*") if path.is_file() and not excluded(path))


def upload_problem(token: str | bool | None = None) -> str | None:
    """Why an upload would fail before it is tried, or `None`: offline mode (`HF_HUB_OFFLINE=1`) or no token (none
    given, none in `HF_TOKEN`, none saved by `hf auth login`). Checked before training, so that a long run does not
    end in an error at its last step; whether the token may write to the repository only the Hub can say."""
    if constants.HF_HUB_OFFLINE:
        return "uploads are off while HF_HUB_OFFLINE=1 is set: unset it to push"
    if token is False or (token is None and get_token() is None):
        return "no Hub token: run `hf auth login` or set HF_TOKEN"
    return None


def upload_failure(error: BaseException) -> str | None:
    """The one-line reason of an upload that failed (the Hub refused it, or no connection could be made: a DNS
    failure, a refused or timed-out connection), or None for an error that is not about the upload."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, httpx.TransportError):
        return f"no connection to the Hub ({first_line(error) or type(error).__name__}); check the network"
    if isinstance(error, (HfHubHTTPError, httpx.HTTPError, OSError)):
        return first_line(error)
    return None


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload MAMO model, processor and model card",
    create_pr: bool = False,
):
    """Upload a folder written by `save_pretrained` (model, processor, code, `README.md` card) to `repo_id`.

    The folder's `config.json` must carry an `auto_map` (MAMO's `save_pretrained` writes it, with the code files),
    so that the repository loads with `trust_remote_code=True` for users without `mamo_hf`, and natively for users
    with it. A folder without a card gets a minimal one. Checkpoints, logs and hidden files stay behind.

    Returns the `CommitInfo` of the single commit.

    Raises:
        FileNotFoundError: if the folder is not a saved MAMO model (no `config.json` with an `auto_map`).
    """
    from transformers.utils.hub import hf_api

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file() or "auto_map" not in json.loads(config_path.read_text()):
        raise FileNotFoundError(
            f"{folder} is not a saved MAMO model: it needs a config.json with an `auto_map` (save the model with "
            "`save_pretrained` after `import mamo_hf`)."
        )
    if not (folder / "README.md").exists():
        write_model_card(folder, model_name=folder.name, summary=f"A MAMO model, `{repo_id}`.")
    card = ModelCard.load(folder / "README.md")
    snippet_id = f'from_pretrained("{card.data.model_name}"'
    card = str(card).replace(snippet_id, f'from_pretrained("{repo_id}"')
    api = hf_api()
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in _files_to_upload(folder)
        if path.name != "README.md"
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    return api.create_commit(
        repo_id=repo_id, operations=operations, commit_message=commit_message, token=token, create_pr=create_pr
    )


def finish_run(folder: str | Path, hub_model_id: str | None = None, **card_arguments) -> None:
    """What every training script does last: write the model card of its output `folder`, and upload the folder to
    `hub_model_id` when one is given (`--push-to-hub --hub-model-id`)."""
    write_model_card(folder, **card_arguments)
    if hub_model_id:
        push_to_hub(folder, hub_model_id)
        print(f"Pushed {folder} to the Hub repository {hub_model_id}.")


__all__ = [
    "MeasuredResult",
    "finish_run",
    "create_model_card",
    "push_to_hub",
    "upload_failure",
    "upload_problem",
    "retrieval_results",
    "write_model_card",
]
