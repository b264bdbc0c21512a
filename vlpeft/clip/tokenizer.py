"""OpenAI CLIP tokenization (SOT + BPE + EOT, zero padded, int64) on top of open_clip's SimpleTokenizer.

Unlike ``open_clip.tokenize``, which silently truncates, too-long texts raise unless ``truncate=True``
(OpenAI / CoOp semantics).
"""
from __future__ import annotations

from functools import lru_cache
from typing import List, Union

import torch

__all__ = ["get_tokenizer", "tokenize", "token_count", "SOT_TOKEN", "EOT_TOKEN"]

SOT_TOKEN = 49406
EOT_TOKEN = 49407


@lru_cache(maxsize=1)
def get_tokenizer():
    """The shared BPE tokenizer (``.encode(text) -> list[int]``, ``.decode(ids)``), built once."""
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer()


def tokenize(texts: Union[str, List[str]], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
    """Tokenize one text or a list into a ``[N, context_length]`` int64 tensor.

    Raises RuntimeError when a text (with SOT/EOT) is longer than ``context_length`` unless ``truncate``,
    in which case it is cut and its last token set to EOT.
    """
    if isinstance(texts, str):
        texts = [texts]
    tok = get_tokenizer()
    sot, eot = tok.sot_token_id, tok.eot_token_id
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot] + tok.encode(text) + [eot]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            ids = ids[:context_length]
            ids[-1] = eot
        result[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return result


def token_count(text: str) -> int:
    """Number of BPE tokens of ``text`` without SOT/EOT (CoOp's ``len(_tokenizer.encode(name))``)."""
    return len(get_tokenizer().encode(text))
