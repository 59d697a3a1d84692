"""mamo_hf: MAMO (masked multimodal modeling for vision-language pre-training, SIGIR 2023) for transformers.

Importing the package registers every MAMO class with the transformers Auto classes, and marks each class for
`register_for_auto_class`, so that a folder written by `save_pretrained` carries the code and loads with
`trust_remote_code=True` where `mamo_hf` is not installed.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForVisualQuestionAnswering,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
    AutoTokenizer,
    BertTokenizer,
)

from .configuration_mamo import MamoConfig, MamoFusionConfig, MamoTextConfig, MamoVisionConfig
from .image_processing_mamo import MamoImageProcessor, MamoImageProcessorPil
from .losses_mamo import JointMasking
from .modeling_mamo import (
    FusionView,
    MamoForImageTextRetrieval,
    MamoForPreTraining,
    MamoForPreTrainingOutput,
    MamoForQuestionAnswering,
    MamoForVisualReasoning,
    MamoFusionModel,
    MamoImageTextMatchingOutput,
    MamoModel,
    MamoModelOutput,
    MamoPreTrainedModel,
    MamoQuestionAnsweringOutput,
    MamoTextModel,
    MamoVisionModel,
    MamoVisualReasoningOutput,
    PretrainingObjective,
    StudentEncoding,
    TeacherTarget,
)
from .processing_mamo import MamoProcessor

__version__ = "0.1.0"

for _config in (MamoConfig, MamoVisionConfig, MamoTextConfig, MamoFusionConfig):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
for _config, _model in (
    (MamoConfig, MamoModel),
    (MamoVisionConfig, MamoVisionModel),
    (MamoTextConfig, MamoTextModel),
    (MamoFusionConfig, MamoFusionModel),
):
    AutoModel.register(_config, _model, exist_ok=True)
AutoModelForPreTraining.register(MamoConfig, MamoForPreTraining, exist_ok=True)
AutoModelForVisualQuestionAnswering.register(MamoConfig, MamoForQuestionAnswering, exist_ok=True)
# [decision] The retrieval head is the zero-shot classifier: N images × M labels by ITC, as CLIP, with the ITM head
# at hand to re-rank (`mamo_hf.zero_shot_classify`). NLVR2 has no Auto class of its own in transformers; a sentence
# classified against two images is closest to sequence classification.
AutoModelForZeroShotImageClassification.register(MamoConfig, MamoForImageTextRetrieval, exist_ok=True)
AutoModelForSequenceClassification.register(MamoConfig, MamoForVisualReasoning, exist_ok=True)
AutoImageProcessor.register(
    MamoConfig,
    image_processor_classes={"torchvision": MamoImageProcessor, "pil": MamoImageProcessorPil},
    exist_ok=True,
)
AutoTokenizer.register(MamoConfig, tokenizer_class=BertTokenizer, exist_ok=True)
AutoProcessor.register(MamoConfig, MamoProcessor, exist_ok=True)

# Code that a saved folder carries for users without the package. Both image-processor backends register, so
# that the folder's `auto_map` names both whichever one saved it.
MamoConfig.register_for_auto_class()
MamoModel.register_for_auto_class("AutoModel")
MamoForPreTraining.register_for_auto_class("AutoModelForPreTraining")
MamoForQuestionAnswering.register_for_auto_class("AutoModelForVisualQuestionAnswering")
MamoForImageTextRetrieval.register_for_auto_class("AutoModelForZeroShotImageClassification")
MamoForVisualReasoning.register_for_auto_class("AutoModelForSequenceClassification")
MamoImageProcessor.register_for_auto_class("AutoImageProcessor")
MamoImageProcessorPil.register_for_auto_class("AutoImageProcessor")
MamoProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "JointMasking",
    "MamoConfig",
    "MamoForImageTextRetrieval",
    "MamoForPreTraining",
    "MamoForPreTrainingOutput",
    "MamoForQuestionAnswering",
    "MamoForVisualReasoning",
    "MamoFusionConfig",
    "MamoFusionModel",
    "MamoImageProcessor",
    "MamoImageProcessorPil",
    "MamoImageTextMatchingOutput",
    "MamoModel",
    "MamoModelOutput",
    "MamoPreTrainedModel",
    "MamoProcessor",
    "MamoQuestionAnsweringOutput",
    "MamoTextConfig",
    "MamoTextModel",
    "MamoVisionConfig",
    "MamoVisionModel",
    "MamoVisualReasoningOutput",
    "FusionView",
    "PretrainingObjective",
    "StudentEncoding",
    "TeacherTarget",
]
