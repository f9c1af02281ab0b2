"""Data loaders (MNIST IDX raw and gzip, CIFAR-10 binary batches) on small files the tests
write, checkpoints, and their command-line errors."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from intergrad import checkpoint, cli, data
from intergrad import layers as L
from intergrad.nn import SGD


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.tobytes()
    if gz:
        raw = gzip.compress(raw)
        path = path.with_name(path.name + ".gz")
    path.write_bytes(raw)
    return path


def make_mnist(folder, n=40, gz=False):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for split, m in (("train", n), ("t10k", n // 2)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (m, 28, 28)), gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, m), gz)
    return folder


def make_cifar(folder, n=20):
    rng = np.random.default_rng(1)
    folder.mkdir(exist_ok=True)
    for name in ("data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"):
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1)
        (folder / name).write_bytes(rec.astype(np.uint8).tobytes())
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    make_mnist(tmp_path / "m", gz=gz)
    xtr, ytr, xte, yte = data.load(f"mnist:{tmp_path / 'm'}")
    assert xtr.shape == (40, 1, 28, 28) and xte.shape == (20, 1, 28, 28)
    assert xtr.dtype == np.float32 and 0 <= xtr.min() and xtr.max() <= 1
    assert ytr.dtype == np.int64 and ytr.max() <= 9
    raw = data.read_idx(tmp_path / "m" / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    assert np.allclose(raw / 255.0, xtr[:, 0])


def test_cifar10_batches(tmp_path):
    make_cifar(tmp_path / "c")
    xtr, ytr, xte, yte = data.load(f"cifar10:{tmp_path / 'c'}")
    assert xtr.shape == (40, 3, 32, 32) and xte.shape == (20, 3, 32, 32)
    raw = np.frombuffer((tmp_path / "c" / "test_batch.bin").read_bytes(), np.uint8)
    assert yte[0] == raw[0] and np.isclose(xte[0, 0, 0, 1], raw[2] / 255.0)
    net = L.build("digits", xtr.shape[1:], seed=0)     # builds for 3x32x32 inputs too
    assert net.shapes[-1] == (10,)


def test_malformed_files_name_the_file(tmp_path):
    m = make_mnist(tmp_path / "m")
    (m / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte: file not found"):
        data.load(f"mnist:{m}")
    write_idx(m / "t10k-labels-idx1-ubyte", np.zeros(7))
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.*7.*labels for 20 images"):
        data.load(f"mnist:{m}")
    (m / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 10)
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte: truncated"):
        data.load(f"mnist:{m}")
    (m / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte: not an IDX file"):
        data.load(f"mnist:{m}")
    c = make_cifar(tmp_path / "c")
    (c / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(data.DataError, match="test_batch.bin: 100 bytes"):
        data.load(f"cifar10:{c}")
    with pytest.raises(data.DataError, match="unknown data set"):
        data.load("imagenet:/x")


def test_cli_data_errors_are_one_line_exit_2(tmp_path, capsys):
    m = make_mnist(tmp_path / "m")
    (m / "train-labels-idx1-ubyte").write_bytes(b"")
    assert cli.main(["train", "--backend", "sim", "--data", f"mnist:{m}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "train-labels-idx1-ubyte" in err
    assert cli.main(["train", "--backend", "sim", "--data", f"cifar10:{tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "none" in err


def test_fit_images():
    x = np.ones((2, 1, 8, 8), np.float32)
    y = data.fit_images(x, (32, 32))
    assert y.shape == (2, 1, 32, 32) and y.sum() == 2 * 24 * 24 and y[0, 0, 4, 4] == 1
    assert data.fit_images(np.ones((1, 1, 28, 28)), (32, 32)).shape == (1, 1, 32, 32)


def test_checkpoint_roundtrip_and_refusals(tmp_path):
    net = L.build("lenet", (1, 8, 8), seed=0)
    opt = SGD(net.params(), 0.1, 0.9)
    opt.step([np.ones_like(p) for p in net.params()])
    rng = np.random.default_rng(5)
    rng.random(3)
    p = tmp_path / "c.npz"
    checkpoint.save(p, net, opt, epoch=3, precision="int8", rng=rng)
    net2 = L.build("lenet", (1, 8, 8), seed=9)
    opt2 = SGD(net2.params(), 0.1, 0.9)
    rng2 = np.random.default_rng(0)
    meta = checkpoint.restore(p, net2, opt2, precision="int8", rng=rng2)
    assert meta["epoch"] == 3 and opt2.steps == 1
    for a, b in zip(net.params(), net2.params()):
        assert np.array_equal(a, b)
    for a, b in zip(opt.velocity, opt2.velocity):
        assert np.array_equal(a, b)
    assert rng.random() == rng2.random()
    with pytest.raises(checkpoint.CheckpointError, match="precision int8, not int16"):
        checkpoint.restore(p, net2, precision="int16")
    with pytest.raises(checkpoint.CheckpointError, match="network lenet.*not of digits"):
        checkpoint.restore(p, L.build("digits", (1, 8, 8)))
    with pytest.raises(checkpoint.CheckpointError, match="not of lenet"):
        checkpoint.restore(p, L.build("lenet", (1, 8, 8), channels=4))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="not an intergrad checkpoint"):
        checkpoint.read(tmp_path / "bad.npz")


def test_cli_save_resume_evaluate(tmp_path, capsys):
    ck = str(tmp_path / "ck.npz")
    base = ["train", "--backend", "sim", "--array", "8x8", "--net", "digits", "--channels", "2",
            "--limit", "64", "--batch", "32", "--measure-steps", "0", "--no-progress"]
    assert cli.main(base + ["--epochs", "1", "--save", ck]) == 0
    out = capsys.readouterr().out
    assert "epoch   1" in out and "checkpoint:" in out
    assert cli.main(base + ["--epochs", "2", "--load", ck, "--save", ck]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "epoch   2" in out and "epoch   1 " not in out
    assert checkpoint.read(ck)[0]["epoch"] == 2
    # a straight 2-epoch run ends with the same weights as 1 + resume 1
    ck2 = str(tmp_path / "ck2.npz")
    assert cli.main(base + ["--epochs", "2", "--save", ck2]) == 0
    capsys.readouterr()
    for a, b in zip(checkpoint.read(ck)[1], checkpoint.read(ck2)[1]):
        assert np.array_equal(a, b)
    assert cli.main(["evaluate", "--backend", "sim", "--load", ck]) == 0
    out = capsys.readouterr().out
    assert "on the array (int16)" in out and "conv1" in out
    assert cli.main(base + ["--bits", "8", "--load", ck]) == 2
    assert "precision int16, not int8" in capsys.readouterr().err
    assert cli.main(["train", "--backend", "sim", "--net", "lenet", "--load", ck]) == 2
    assert "network digits, not lenet" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [
    (["--net", "lenet5", "--channels", "4"], "--channels: lenet5"),
    (["--momentum", "1.5"], "--momentum"),
    (["--bits", "12"], "--bits"),
    (["--net", "vgg"], "--net"),
    (["--data", "digits:/x"], "give no folder"),
    (["--data", "mnist"], "mnist needs a folder"),
])
def test_cli_train_option_errors(argv, msg, capsys):
    assert cli.main(["train", "--backend", "sim"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and msg in err, err


def test_digits_read_directly_equal_scikit_learn():
    """The digits read from scikit-learn's CSV without importing scikit-learn are exactly
    what ``sklearn.datasets.load_digits`` returns; without the file, the loader falls back
    to scikit-learn and returns the same."""
    from sklearn.datasets import load_digits

    from intergrad import nn

    assert nn._sklearn_digits_file() is not None, "scikit-learn's digits.csv.gz not found"
    images, target = nn.load_digits_raw()
    ref = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == ref.images.dtype
    assert np.array_equal(images, ref.images) and np.array_equal(target, ref.target)
    orig = nn._sklearn_digits_file
    try:
        nn._sklearn_digits_file = lambda: None
        images2, target2 = nn.load_digits_raw()
    finally:
        nn._sklearn_digits_file = orig
    assert np.array_equal(images2, ref.images) and np.array_equal(target2, ref.target)


def test_train_command_does_not_import_scikit_learn():
    """`intergrad train`'s data loading reads the digits without importing scikit-learn
    (seconds of imports before the first step)."""
    import subprocess
    import sys

    code = ("import sys; from intergrad import nn; nn.load_digits_split(); "
            "print('sklearn' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
