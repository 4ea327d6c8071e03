"""CLIP-S between images and their prompts (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric
for Image Captioning"), with the ``100 · max(cos, 0)`` scaling of torchmetrics' CLIPScore instead of w = 2.5.

Images and prompts are paired by name. A prompt longer than the model's context is cut to its first tokens and
the end-of-text token is put back at the end, because the text embedding is read at that token's position;
this module gathers the embedding there itself rather than trusting a pooling rule of the model class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medsr.device import resolve_device
from medsr.errors import InputError, require
from medsr.evaluation.evaluate import Evaluation
from medsr.evaluation.pairing import match_files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
DEFAULT_MODEL = "openai/clip-vit-base-patch32"


@dataclass
class ClipBundle:
    """A CLIP model with its tokenizer and image processor."""

    model: Any
    tokenizer: Any
    processor: Any
    source: str

    @property
    def context(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)


def image_processor_class() -> Any:
    """CLIP's PIL-based image processor (newer transformers name it ``CLIPImageProcessorPil`` and warn when the
    default one would need torchvision, which medsr does not use)."""
    import transformers

    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor


def _from_pretrained(source: str, local_only: bool) -> ClipBundle:
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(source, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    processor = image_processor_class().from_pretrained(source, local_files_only=local_only)
    return ClipBundle(model.eval(), tokenizer, processor, source)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (never true in offline mode)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_clip(name_or_path: str) -> ClipBundle:
    """Load from a local Hugging Face directory, else from the local hub cache, else from the hub."""
    path = Path(name_or_path)
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        require(path.is_dir(), path, "no such model directory")
        try:
            return _from_pretrained(str(path), local_only=True)
        except Exception as err:
            raise InputError(path, f"not a CLIP model directory in the Hugging Face format ({_first_line(err)})"
                             ) from None
    try:
        return _from_pretrained(name_or_path, local_only=True)
    except Exception:
        pass
    require(_hub_reachable(), "--model", f"'{name_or_path}' is neither a local directory nor in the Hugging Face "
                                         "cache, and the hub is unreachable; download it where the hub is "
                                         "reachable, or give a local directory")
    try:
        return _from_pretrained(name_or_path, local_only=False)
    except Exception as err:
        raise InputError("--model", f"the hub could not provide '{name_or_path}' ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def encode_prompts(tokenizer: Any, prompts: Sequence[str], context: int) -> tuple[list[list[int]], list[bool]]:
    """Token ids per prompt, each at most ``context`` long and ending with the end-of-text token, and whether
    each prompt had to be truncated."""
    eos = tokenizer.eos_token_id
    require(eos is not None, "--model", "the tokenizer has no end-of-text token")
    ids, truncated = [], []
    for prompt in prompts:
        tokens = list(tokenizer(prompt, add_special_tokens=True, truncation=False)["input_ids"])
        if not tokens or tokens[-1] != eos:
            tokens.append(eos)
        truncated.append(len(tokens) > context)
        ids.append(tokens[: context - 1] + [eos] if truncated[-1] else tokens)
    return ids, truncated


def _text_embeddings(bundle: ClipBundle, ids: list[list[int]], device: torch.device) -> torch.Tensor:
    pad = bundle.tokenizer.pad_token_id if bundle.tokenizer.pad_token_id is not None else bundle.tokenizer.eos_token_id
    length = max(len(t) for t in ids)
    input_ids = torch.full((len(ids), length), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    hidden = bundle.model.text_model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    eot = torch.tensor([len(t) - 1 for t in ids], device=device)
    return bundle.model.text_projection(hidden[torch.arange(len(ids), device=device), eot])


def _image_embeddings(bundle: ClipBundle, images: list[Any], device: torch.device) -> torch.Tensor:
    pixels = bundle.processor(images=images, return_tensors="pt")["pixel_values"].to(device)
    return bundle.model.visual_projection(bundle.model.vision_model(pixel_values=pixels).pooler_output)


def _read_prompt(path: Path) -> str:
    raw = path.read_bytes()
    require(b"\x00" not in raw, path, "not a text file (contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    require(bool(text), path, "empty prompt")
    return text


def _read_image(path: Path) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16"):  # 16-bit grey: to 8 bits by the dtype's range, as medsr evaluate does
                im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).round().astype(np.uint8))
            return im.convert("RGB")
    except Exception as err:
        raise InputError(path, f"cannot read image ({_first_line(err)})") from None


def cosine_scores(bundle: ClipBundle, images: list[Path], prompts: list[str], device: torch.device,
                  batch_size: int) -> tuple[np.ndarray, list[int], list[bool]]:
    """Cosine similarity of each image file with its prompt (images read batch by batch); also token counts and
    which prompts were truncated."""
    ids, truncated = encode_prompts(bundle.tokenizer, prompts, bundle.context)
    model = bundle.model.to(device)
    scores = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                part = slice(start, start + batch_size)
                pictures = [_read_image(path) for path in images[part]]
                img = torch.nn.functional.normalize(_image_embeddings(bundle, pictures, device).float(), dim=-1)
                txt = torch.nn.functional.normalize(_text_embeddings(bundle, ids[part], device).float(), dim=-1)
                scores.append((img * txt).sum(-1).cpu())
    except torch.OutOfMemoryError:
        raise InputError("--batch-size", f"out of GPU memory at batch size {batch_size}; try "
                                         f"--batch-size {max(1, batch_size // 2)}") from None
    finally:
        model.to("cpu")
    return torch.cat(scores).double().numpy(), [len(t) for t in ids], truncated


@dataclass
class ClipResult:
    """The evaluation (per-pair cosine and CLIP-S) and how many prompts were truncated."""

    evaluation: Evaluation
    truncated: int
    context: int


def clip_score(img_dir: Path, txt_dir: Path, model: str = DEFAULT_MODEL, device: str = "auto",
               batch_size: int = 32, allow_missing: bool = False) -> ClipResult:
    """Pair ``img_dir/x.*`` with ``txt_dir/x.txt`` and score every pair."""
    require(batch_size >= 1, "--batch-size", f"must be >= 1, got {batch_size}")
    target = resolve_device(device)
    matching = match_files(Path(img_dir), Path(txt_dir), allow_missing, (IMAGE_SUFFIXES, TEXT_SUFFIXES))
    prompts = [_read_prompt(t) for _, _, t in matching.pairs]
    bundle = load_clip(model)
    cosines, lengths, truncated = cosine_scores(bundle, [i for _, i, _ in matching.pairs], prompts, target,
                                                batch_size)
    records = [{"file": key, "cosine": float(c), "clip_s": 100 * max(float(c), 0.0), "tokens": n,
                "note": "truncated" if cut else ""}
               for (key, _, _), c, n, cut in zip(matching.pairs, cosines, lengths, truncated)]
    protocol = {"images": str(img_dir), "prompts": str(txt_dir), "pairs": len(records), "model": bundle.source,
                "device": str(target), "batch size": batch_size,
                "context": f"{bundle.context} tokens; longer prompts cut to their first {bundle.context - 1} tokens "
                           f"+ end-of-text ({sum(truncated)} truncated)",
                "text embedding": "read at the end-of-text token", "clip-s": "100 * max(cosine, 0)"}
    evaluation = Evaluation(protocol, ["cosine", "clip_s"], records, ["file"], ["tokens", "note"],
                            matching.unmatched_lines(str(img_dir), str(txt_dir)))
    return ClipResult(evaluation, sum(truncated), bundle.context)
