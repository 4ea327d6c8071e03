"""``medsr clip-score`` with a tiny randomly initialised CLIP saved locally, checked against a manual computation."""

import json
import string

import numpy as np
import pytest
import torch
from PIL import Image

from medsr.cli import main

CONTEXT = 77


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from medsr.evaluation.clip import image_processor_class

    root = tmp_path_factory.mktemp("clip")
    letters = list(string.ascii_lowercase)
    tokens = ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters]
    (root / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    model_dir = root / "model"
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokens), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=CONTEXT, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=30, patch_size=15, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16)
    model = CLIPModel(config).eval()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    processor = image_processor_class()(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    processor.save_pretrained(model_dir)
    return model_dir, model, tokenizer, processor


def _manual_cosine(model, tokenizer, processor, image, prompt):
    ids = tokenizer(prompt)["input_ids"]
    if len(ids) > CONTEXT:
        ids = ids[: CONTEXT - 1] + [tokenizer.eos_token_id]
    with torch.no_grad():
        hidden = model.text_model(input_ids=torch.tensor([ids])).last_hidden_state[0, len(ids) - 1]
        text = model.text_projection(hidden)
        pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)[0]
    return float(torch.nn.functional.cosine_similarity(text, img, dim=0))


def _data(tmp_path, prompts):
    rng = np.random.default_rng(0)
    img_dir, txt_dir = tmp_path / "img", tmp_path / "txt"
    img_dir.mkdir()
    txt_dir.mkdir()
    for name, prompt in prompts.items():
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(img_dir / f"{name}.png")
        (txt_dir / f"{name}.txt").write_text(prompt)
    return img_dir, txt_dir


def test_scores_match_manual_computation(tiny_clip, tmp_path, capsys):
    model_dir, model, tokenizer, processor = tiny_clip
    prompts = {"cat": "a cat on a mat", "dog": "a brown dog", "sky": "blue sky"}
    img_dir, txt_dir = _data(tmp_path, prompts)
    out = tmp_path / "r.json"
    status = main(["clip-score", str(img_dir), str(txt_dir), "--model", str(model_dir), "--device", "cpu",
                   "--batch-size", "2", "--json", str(out)])
    assert status == 0
    report = json.loads(out.read_text())
    for item in report["items"]:
        image = Image.open(img_dir / f"{item['file']}.png").convert("RGB")
        expected = _manual_cosine(model, tokenizer, processor, image, prompts[item["file"]])
        assert abs(item["cosine"] - expected) < 1e-5
        assert abs(item["clip_s"] - 100 * max(expected, 0)) < 1e-3
    assert abs(report["summary"]["clip_s"]["mean"] - np.mean([i["clip_s"] for i in report["items"]])) < 1e-9
    assert "warning" not in capsys.readouterr().err


def test_long_prompt_keeps_end_of_text(tiny_clip, tmp_path, capsys):
    model_dir, model, tokenizer, processor = tiny_clip
    long_prompt = " ".join(["word", "scan", "brain", "tissue"] * 30)
    assert len(long_prompt.split()) == 120
    img_dir, txt_dir = _data(tmp_path, {"long": long_prompt, "short": "a scan"})
    out = tmp_path / "r.json"
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", str(model_dir), "--device", "cpu",
                 "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 prompt(s) longer than 77 tokens were truncated" in err
    item = next(i for i in json.loads(out.read_text())["items"] if i["file"] == "long")
    image = Image.open(img_dir / "long.png").convert("RGB")
    assert item["tokens"] == CONTEXT and item["note"] == "truncated"
    assert abs(item["cosine"] - _manual_cosine(model, tokenizer, processor, image, long_prompt)) < 1e-5
    with torch.no_grad():
        ids = tokenizer(long_prompt)["input_ids"][:CONTEXT]
        cut = model.text_projection(model.text_model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1])
        img = model.visual_projection(model.vision_model(
            pixel_values=processor(images=[image], return_tensors="pt")["pixel_values"]).pooler_output)[0]
    assert abs(item["cosine"] - float(torch.nn.functional.cosine_similarity(cut, img, dim=0))) > 1e-4


def test_bad_inputs_are_one_line_errors(tiny_clip, tmp_path, capsys):
    model_dir = tiny_clip[0]
    img_dir, txt_dir = _data(tmp_path, {"a": "a cat", "b": "a dog"})
    (txt_dir / "b.txt").write_bytes(b"\x00\x01binary")
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", str(model_dir), "--device", "cpu"]) == 2
    assert "b.txt: not a text file" in capsys.readouterr().err
    (txt_dir / "b.txt").write_text("a dog")
    (txt_dir / "c.txt").write_text("unmatched")
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", str(model_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "without a match: c" in err and len(err.strip().splitlines()) == 1
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", str(tmp_path / "nope"), "--device", "cpu",
                 "--allow-missing"]) == 2
    assert "no such model directory" in capsys.readouterr().err
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", str(model_dir), "--device", "cuda:99",
                 "--allow-missing"]) == 2
    assert "--device" in capsys.readouterr().err


def test_unreachable_hub_and_unreadable_image(tiny_clip, tmp_path, capsys, monkeypatch):
    import medsr.evaluation.clip as clip

    img_dir, txt_dir = _data(tmp_path, {"a": "a cat"})
    monkeypatch.setattr(clip, "_hub_reachable", lambda: False)
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", "someorg/no-such-clip", "--device", "cpu"]) == 2
    assert "hub is unreachable" in capsys.readouterr().err
    (img_dir / "a.png").write_bytes(b"not a png")
    assert main(["clip-score", str(img_dir), str(txt_dir), "--model", str(tiny_clip[0]), "--device", "cpu"]) == 2
    assert "a.png: cannot read image" in capsys.readouterr().err
