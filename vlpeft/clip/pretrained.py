"""Locating OpenAI CLIP weights on disk (and, when allowed, downloading them).

Search order of :func:`resolve_clip_weights`:

1. the ``path`` argument (``cfg.MODEL.BACKBONE.PATH``): a file, or a directory holding the OpenAI file;
   ``vlpeft-testbed`` (the testbed's tiny CLIP) is the checkpoint shipped in ``vlpeft/testbed/``;
2. ``$VLPEFT_CLIP_WEIGHTS``: a file, or a directory holding the OpenAI file;
3. ``~/.cache/clip/<openai file>``: where CoOp-family repos (and open_clip's URL download) keep OpenAI's JIT archives;
4. open_clip's Hugging Face hub entry in the local HF cache (no network);
5. a download through open_clip, unless ``HF_HUB_OFFLINE`` or ``VLPEFT_OFFLINE`` is set.

Nothing found raises :class:`CLIPWeightsNotFoundError`; there is never a fallback to random weights.
"""
from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path
from typing import List, NamedTuple, Optional

__all__ = [
    "Backbone",
    "BACKBONES",
    "CLIPWeightsNotFoundError",
    "canonical_backbone",
    "hf_hub_cache_dir",
    "resolve_clip_weights",
]

ENV_WEIGHTS = "VLPEFT_CLIP_WEIGHTS"
ENV_OFFLINE = "VLPEFT_OFFLINE"
ENV_TIMEOUT = "VLPEFT_DOWNLOAD_TIMEOUT"  # seconds per blocking socket operation during a download


class Backbone(NamedTuple):
    """OpenAI file name (as CoOp's ``_download`` saves it), open_clip model name, open_clip pretrained tag."""
    openai_file: str
    open_clip_name: str
    pretrained_tag: str


BACKBONES = {
    "RN50": Backbone("RN50.pt", "RN50", "openai"),
    "RN101": Backbone("RN101.pt", "RN101", "openai"),
    "RN50x4": Backbone("RN50x4.pt", "RN50x4", "openai"),
    "RN50x16": Backbone("RN50x16.pt", "RN50x16", "openai"),
    "RN50x64": Backbone("RN50x64.pt", "RN50x64", "openai"),
    "ViT-B/32": Backbone("ViT-B-32.pt", "ViT-B-32", "openai"),
    "ViT-B/16": Backbone("ViT-B-16.pt", "ViT-B-16", "openai"),
    "ViT-L/14": Backbone("ViT-L-14.pt", "ViT-L-14", "openai"),
    "ViT-L/14@336px": Backbone("ViT-L-14-336px.pt", "ViT-L-14-336", "openai"),
}


class CLIPWeightsNotFoundError(FileNotFoundError):
    """No weights file for a CLIP backbone; ``.tried`` lists every location looked at."""

    def __init__(self, message: str, backbone: str = "", tried: Optional[List[str]] = None):
        super().__init__(message)
        self.backbone = backbone
        self.tried = list(tried or [])

    def __str__(self) -> str:  # FileNotFoundError's default str() would drop the message formatting
        return self.args[0]


def canonical_backbone(name: str) -> str:
    """Map a CoOp spelling, open_clip name or OpenAI file stem (any case) to the CoOp key of ``BACKBONES``."""
    key = name.strip()
    if key in BACKBONES:
        return key
    low = key.lower()
    for canon, bb in BACKBONES.items():
        aliases = {canon.lower(), bb.open_clip_name.lower(), bb.openai_file.lower(), bb.openai_file[:-3].lower()}
        if low in aliases:
            return canon
    raise ValueError(f"Unknown CLIP backbone {name!r}. Valid names: {', '.join(BACKBONES)}, vlpeft-testbed "
                     f"(or give the weights file via MODEL.BACKBONE.PATH).")


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _offline() -> Optional[str]:
    for var in ("HF_HUB_OFFLINE", ENV_OFFLINE):
        if _truthy(os.environ.get(var)):
            return var
    return None


def clip_cache_dir() -> Path:
    """``~/.cache/clip`` (literal, as in OpenAI's and CoOp's ``_download``; HOME is read at call time)."""
    return Path(os.path.expanduser("~/.cache/clip"))


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, computed from the environment at call time (like huggingface_hub does)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(hf_home).expanduser() / "hub"


def _hf_entry(bb: Backbone):
    """(repo_id, [candidate file names]) of open_clip's HF hub entry for the backbone, or None."""
    try:
        import open_clip
        cfg = open_clip.get_pretrained_cfg(bb.open_clip_name, bb.pretrained_tag)
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    except Exception:  # pragma: no cover - open_clip is a hard dependency
        return None
    hub = (cfg or {}).get("hf_hub", "")
    if not hub:
        return None
    repo_id, filename = os.path.split(hub)
    if not filename:
        names = [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    elif filename.endswith((".bin", ".pth")):
        names = [filename[:-4] + ".safetensors", filename]
    else:
        names = [filename]
    return repo_id, names


def _openai_url(bb: Backbone) -> str:
    try:
        import open_clip
        return (open_clip.get_pretrained_cfg(bb.open_clip_name, bb.pretrained_tag) or {}).get("url", "")
    except Exception:  # pragma: no cover
        return ""


def _find_in_hf_cache(bb: Backbone, tried: List[str]) -> Optional[Path]:
    entry = _hf_entry(bb)
    if entry is None:
        return None
    repo_id, names = entry
    cache = hf_hub_cache_dir()
    for fname in names:
        tried.append(f"{cache}/models--{repo_id.replace('/', '--')}/snapshots/*/{fname} (Hugging Face hub cache)")
        try:
            from huggingface_hub import try_to_load_from_cache
            hit = try_to_load_from_cache(repo_id, fname, cache_dir=str(cache))
        except Exception:
            hit = None
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _unreachable(url: str, timeout: float = 5.0) -> Optional[str]:
    """None when a TCP connection to the URL's host opens (or a proxy is configured), else why not."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return None
    except OSError as err:
        return f"{parts.hostname}:{port} unreachable ({err})"


def _download_pretrained(cfg: dict, prefer_hf_hub: bool, cache_dir: str) -> str:
    """open_clip's downloader behind a quick reachability probe (huggingface_hub retries for ~25 s per file
    when offline). Tests replace this function."""
    import open_clip
    url = cfg.get("url") or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    why = _unreachable(url)
    if why:
        raise ConnectionError(why)
    return open_clip.download_pretrained(cfg, prefer_hf_hub=prefer_hf_hub, cache_dir=cache_dir)


def _try_download(bb: Backbone, tried: List[str]) -> Optional[Path]:
    import open_clip
    cfg = open_clip.get_pretrained_cfg(bb.open_clip_name, bb.pretrained_tag) or {}
    timeout = float(os.environ.get(ENV_TIMEOUT) or 30)
    attempts = []
    if cfg.get("url"):  # OpenAI's own JIT archive, saved where CoOp keeps it
        attempts.append(({"url": cfg["url"]}, False, clip_cache_dir(), cfg["url"]))
    if cfg.get("hf_hub"):
        attempts.append(({"hf_hub": cfg["hf_hub"]}, True, hf_hub_cache_dir(), f"hf://{cfg['hf_hub']}"))
    for sub_cfg, prefer_hub, cache_dir, where in attempts:
        partial = cache_dir / os.path.basename(sub_cfg.get("url", ""))
        existed = partial.exists() if sub_cfg.get("url") else True
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)  # urllib in open_clip has no timeout of its own
        try:
            target = _download_pretrained(sub_cfg, prefer_hub, str(cache_dir))
        except Exception as err:  # no network, HTTP error, checksum mismatch...
            msg = str(err).splitlines()[0][:200] if str(err) else ""
            tried.append(f"download from {where}: failed ({type(err).__name__}: {msg})")
            if not existed and partial.is_file():
                partial.unlink()  # do not leave a truncated file where step 3 would find it
            continue
        finally:
            socket.setdefaulttimeout(old_timeout)
        if target and os.path.isfile(target):
            return Path(target)
        tried.append(f"download from {where}: returned no file")
    return None


def packaged_backbone(name: str) -> Optional[Path]:
    """The checkpoint shipped inside vlpeft for ``name`` (the testbed's ``vlpeft-testbed``), or None."""
    if name.strip().lower() != "vlpeft-testbed":
        return None
    from vlpeft.testbed import CHECKPOINT

    p = Path(CHECKPOINT)
    if not p.is_file():
        raise CLIPWeightsNotFoundError(
            f"The testbed CLIP {p} is missing from this installation; rebuild it with "
            "`python -m vlpeft.testbed.pretrain` (about 25 minutes on 2 CPU cores).", backbone=name, tried=[str(p)])
    return p


def resolve_clip_weights(name: str, path: str = "") -> Path:
    """Return the path of the weights file for backbone ``name`` (see module docstring for the search order)."""
    tried: List[str] = []
    if path:
        p = Path(os.path.expanduser(str(path)))
        if p.is_file():
            return p
        cand = None
        if p.is_dir():
            try:
                cand = p / BACKBONES[canonical_backbone(name)].openai_file
            except ValueError:
                pass
            if cand is not None and cand.is_file():
                return cand
        what = (f"is a directory without {cand.name if cand is not None else 'a known OpenAI weights file'}"
                if p.is_dir() else "does not exist")
        raise CLIPWeightsNotFoundError(
            f"CLIP weights for backbone {name!r}: MODEL.BACKBONE.PATH={str(path)!r} {what}. "
            "Point MODEL.BACKBONE.PATH at an existing OpenAI CLIP checkpoint (.pt JIT archive, state dict "
            "or .safetensors), or leave it empty to use the default search.",
            backbone=name, tried=[str(p)])

    packaged = packaged_backbone(name)
    if packaged is not None:
        return packaged

    canon = canonical_backbone(name)  # ValueError listing the valid names
    bb = BACKBONES[canon]
    default_file = clip_cache_dir() / bb.openai_file

    tried.append("MODEL.BACKBONE.PATH: (not set)")
    env = os.environ.get(ENV_WEIGHTS, "")
    if env:
        e = Path(os.path.expanduser(env))
        if e.is_file():
            return e
        if e.is_dir():
            if (e / bb.openai_file).is_file():
                return e / bb.openai_file
            tried.append(f"{e / bb.openai_file} (${ENV_WEIGHTS} is a directory without {bb.openai_file})")
        else:
            tried.append(f"{e} (${ENV_WEIGHTS}; does not exist)")
    else:
        tried.append(f"${ENV_WEIGHTS}: (not set)")

    tried.append(f"{default_file} (CoOp / OpenAI cache)")
    if default_file.is_file():
        return default_file

    hit = _find_in_hf_cache(bb, tried)
    if hit is not None:
        return hit

    off = _offline()
    if off:
        tried.append(f"download: skipped ({off}={os.environ.get(off)})")
    else:
        hit = _try_download(bb, tried)
        if hit is not None:
            return hit

    lines = "\n".join(f"  - {t}" for t in tried)
    url = _openai_url(bb)
    raise CLIPWeightsNotFoundError(
        f"CLIP weights for backbone {canon!r} not found (no random-weight fallback). Tried:\n{lines}\n"
        f"To fix: put OpenAI's {bb.openai_file}{f' ({url})' if url else ''} at {default_file}, "
        f"or set MODEL.BACKBONE.PATH (or ${ENV_WEIGHTS}) to that file or to a directory containing "
        f"{bb.openai_file}; or go online without HF_HUB_OFFLINE/{ENV_OFFLINE} so it can be downloaded.",
        backbone=canon, tried=tried)
