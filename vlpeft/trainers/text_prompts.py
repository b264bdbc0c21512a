"""Class-prompt construction shared by the CoOp-style text prompt learners (CoOp §3.2).

The string tokenised for class c is ``"<prefix> <classname>."``; the prefix is the context initialisation words or
``n_ctx`` placeholder "X" tokens, which only fixes where the class name and EOT fall. Learnable vectors replace the
token embeddings at positions ``1..n_ctx`` (right after SOS).
"""
import torch
import torch.nn as nn

from vlpeft.clip import token_count, tokenize


def clean_classnames(classnames):
    return [name.replace("_", " ") for name in classnames]


@torch.no_grad()
def context_from_words(clip_model, ctx_init):
    """Token embeddings of the words of ``ctx_init`` (``_`` read as a space) as fp32 ``[n_words, D]``."""
    ctx_init = ctx_init.replace("_", " ")
    n_ctx = len(ctx_init.split(" "))
    tokens = tokenize(ctx_init)
    embedding = clip_model.token_embedding(tokens)
    return embedding[0, 1:1 + n_ctx, :].float().clone(), ctx_init


def random_context(n_ctx, ctx_dim, n_cls=None, std=0.02):
    """N(0, std^2) context vectors, generic ``[n_ctx, D]`` or class-specific ``[n_cls, n_ctx, D]`` (fp32)."""
    shape = (n_ctx, ctx_dim) if n_cls is None else (n_cls, n_ctx, ctx_dim)
    vectors = torch.empty(*shape, dtype=torch.float32)
    nn.init.normal_(vectors, std=std)
    return vectors


class ClassPromptEmbeddings(nn.Module):
    """Frozen per-class pieces around the learnable context: SOS embedding (``token_prefix``), the embeddings after
    the context (class name, ".", EOT, padding: ``token_suffix``) and the token ids (for EOT pooling).

    The buffers are non-persistent: they depend on the class names, so checkpoints never carry them and a model
    trained on base classes loads for new ones.
    """

    def __init__(self, clip_model, classnames, prompt_prefix, n_ctx):
        super().__init__()
        classnames = clean_classnames(classnames)
        self.n_cls = len(classnames)
        self.n_ctx = n_ctx
        self.name_lens = [token_count(name) for name in classnames]
        prompts = [f"{prompt_prefix} {name}." for name in classnames]
        tokenized = tokenize(prompts)
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1, :].clone(), persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :].clone(), persistent=False)

    def assemble(self, ctx, position="end"):
        """Prompts ``[n_cls, L, D]`` from context ``[n_cls, n_ctx, D]`` with the class token at end/middle/front."""
        prefix = self.token_prefix
        suffix = self.token_suffix
        ctx = ctx.to(prefix.dtype)
        if position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        if position not in ("middle", "front"):
            raise ValueError(f'CLASS_TOKEN_POSITION must be end, middle or front, got "{position}"')
        half = self.n_ctx // 2
        prompts = []
        for i, name_len in enumerate(self.name_lens):
            class_i = suffix[i:i + 1, :name_len]
            rest_i = suffix[i:i + 1, name_len:]
            ctx_i = ctx[i:i + 1]
            if position == "middle":
                parts = [prefix[i:i + 1], ctx_i[:, :half], class_i, ctx_i[:, half:], rest_i]
            else:
                parts = [prefix[i:i + 1], class_i, ctx_i, rest_i]
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)
