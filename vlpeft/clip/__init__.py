"""CLIP for vlpeft: OpenAI weights loaded into open_clip models, plus the encoders CoOp-style trainers compose.

Modules: ``pretrained`` (finding weights), ``model`` (reading checkpoints, building), ``tokenizer``,
``encoders`` (TextEncoder, image encoding, dtype casting), ``random_weights`` (random checkpoints in OpenAI's format).
"""
from .encoders import ImageEncoder, TextEncoder, cast_clip, encode_image, model_dtype
from .model import build_clip_from_state_dict, infer_architecture, load_clip, load_state_dict_any
from .pretrained import BACKBONES, CLIPWeightsNotFoundError, resolve_clip_weights
from .tokenizer import get_tokenizer, token_count, tokenize

__all__ = [
    "BACKBONES",
    "resolve_clip_weights",
    "CLIPWeightsNotFoundError",
    "load_state_dict_any",
    "build_clip_from_state_dict",
    "infer_architecture",
    "load_clip",
    "tokenize",
    "token_count",
    "get_tokenizer",
    "TextEncoder",
    "ImageEncoder",
    "encode_image",
    "model_dtype",
    "cast_clip",
]
