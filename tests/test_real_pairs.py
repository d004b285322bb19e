"""The real-data pairs, loaded from tiny fixtures written in each dataset's own distributed format."""
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dpbench.builtins import real_pair_specs as rp
from dpbench.builtins.imagenet_classes import DEVKIT_TO_CIFAR10, TABLE_I
from dpbench.data.file_report import ENV_VAR
from dpbench.data.readers import CorruptFileError, celeba, imagenet32_npz, mnist_idx, svhn_mat
from dpbench.data.types import DataMissingError
from tests.fixtures_real import write_all, write_celeba, write_imagenet32, write_mnist, write_svhn

PAIRS = {p.name: p for p in rp.REAL_PAIRS}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_all(tmp_path_factory.mktemp("data"))


def test_registered_through_the_plugin_hook():
    import dpbench.builtins.pair_real_files as plugin

    registered = []
    plugin.dpbench_register_pairs(registered.append)
    assert [p.name for p in registered] == [
        "svhn-mnist", "imagenet32-cifar10", "imagenet32-cifar10-1pct", "imagenet-celeba", "imagenet-celeba-64"
    ]
    assert all(p.check_files and p.download for p in registered)
    from dpbench.api.registry import load_registry

    origin = load_registry().origin  # and the registry gets them through the entry-point group
    assert {origin[f"pair:{p.name}"].module for p in registered} == {"dpbench.builtins.pair_real_files"}


def test_svhn_mnist_common_format(root):
    pair = PAIRS["svhn-mnist"]
    data = pair.load(str(root))
    assert (pair.image_size, pair.channels, pair.num_classes) == (32, 1, 10)
    for split, n in ((data.public_train, 30), (data.private_train, 40), (data.private_test, 20)):
        assert split.images.shape == (n, 1, 32, 32) and split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.int64 and set(split.labels.tolist()) == set(range(10))
    # SVHN's label 10 is the digit 0; the fixture's y is 1..10 in order.
    assert data.public_train.labels[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    # MNIST is zero-padded 2 px a side, its 28x28 pixels unchanged (the fixture's pixels are >= 1).
    mnist, _ = mnist_idx.load_mnist(root / "MNIST" / "raw", "train")
    assert torch.equal(data.private_train.images[:, :, 2:30, 2:30], mnist.images)
    assert data.private_train.images[:, :, :2].sum() == 0 and data.private_train.images[:, :, :, 30:].sum() == 0
    # SVHN to gray with PIL's "L" weights.
    rgb, _ = svhn_mat.load_svhn(root / "svhn")
    from PIL import Image
    pil = np.asarray(Image.fromarray(rgb.images[0].permute(1, 2, 0).numpy()).convert("L"))
    assert np.abs(pil.astype(int) - data.public_train.images[0, 0].numpy().astype(int)).max() <= 1


def test_md5_and_count_mismatch_are_recorded_warnings_not_errors(root):
    data = PAIRS["svhn-mnist"].load(str(root))
    warnings = data.info["warnings"]
    assert any("train_32x32.mat: warning: MD5" in w for w in warnings)
    assert any("train-images-idx3-ubyte.gz: warning: MD5" in w for w in warnings)
    assert any("MNIST train: 40 images where the official release has 60000" in w for w in warnings)
    statuses = PAIRS["svhn-mnist"].check_files(str(root))
    assert {s.status for s in statuses} == {"present"}
    assert all("MD5" in s.detail for s in statuses)


def _devkit_label_in_pixels(images: torch.Tensor) -> torch.Tensor:
    flat = images.reshape(len(images), -1).to(torch.int64)
    return flat[:, 0] * 256 + flat[:, 1]


def test_imagenet32_cifar10_selects_table_i_by_devkit_id(root):
    pair = PAIRS["imagenet32-cifar10"]
    data = pair.load(str(root))
    assert (pair.image_size, pair.channels, pair.classifier) == (32, 3, "resnet9")
    public = data.public_train
    assert public.images.shape == (100, 3, 32, 32) and public.images.dtype == torch.uint8
    # Each picked image carries its devkit label in its pixels: all are Table I classes, mapped right,
    # and none of the decoys labelled with a sorted-wnid index was picked.
    picked = _devkit_label_in_pixels(public.images)
    assert set(picked.tolist()) == {c.devkit_id for c in TABLE_I}
    assert public.labels.tolist() == [DEVKIT_TO_CIFAR10[int(i)] for i in picked]
    assert torch.bincount(public.labels).tolist() == [10] * 10
    assert data.private_train.images.shape == (550, 3, 32, 32) and data.private_test.images.shape == (30, 3, 32, 32)
    assert data.info["label_names"][0] == "airplane"


def test_imagenet32_unconditional_stream_covers_all_train(root):
    data = PAIRS["imagenet32-cifar10"].load(str(root))
    chunks = list(data.info["public_unconditional"](chunk_size=64, seed=1))
    assert sum(len(c) for c in chunks) == 400 and max(len(c) for c in chunks) <= 64
    labels = torch.cat([c.labels for c in chunks])
    assert torch.equal(labels + 1, torch.cat([_devkit_label_in_pixels(c.images) for c in chunks]))
    assert labels.min() >= 0 and labels.max() <= 999


def test_one_percent_subset_is_50_per_class_and_fixed_by_its_seed(root):
    pair = PAIRS["imagenet32-cifar10-1pct"]
    a, b = pair.load(str(root)), pair.load(str(root))
    assert torch.bincount(a.private_train.labels).tolist() == [50] * 10
    assert torch.equal(a.private_train.images, b.private_train.images)
    assert a.info["split_seed"] == rp.ONE_PERCENT_SEED
    full = PAIRS["imagenet32-cifar10"].load(str(root)).private_train
    index = rp.one_percent_subset(full.labels)
    assert torch.equal(full.images[index], a.private_train.images)
    assert not torch.equal(index, rp.one_percent_subset(full.labels, seed=rp.ONE_PERCENT_SEED + 1))


@pytest.mark.parametrize("name,size", [("imagenet-celeba", 32), ("imagenet-celeba-64", 64)])
def test_imagenet_celeba(root, tmp_path, name, size):
    male = write_celeba(tmp_path / "celeba")  # same seed as the module fixture: same labels
    pair = PAIRS[name]
    data = pair.load(str(root))
    assert (pair.image_size, pair.channels, pair.num_classes) == (size, 3, 2)
    assert data.private_train.images.shape == (8, 3, size, size)
    assert data.private_test.images.shape == (2, 3, size, size)
    assert data.private_train.labels.tolist() == male["train"] and data.private_test.labels.tolist() == male["test"]
    assert data.public_train.images.shape == (25, 3, size, size)
    assert data.info["main_metric"] == "fid" and data.info["attribute"] == "Male"
    first = celeba.decode(root / "celeba" / "img_align_celeba" / "000001.jpg", size)
    assert torch.equal(data.private_train.images[0], torch.from_numpy(first))


def test_celeba_decode_at_a_reduced_jpeg_scale_matches_the_full_decode(tmp_path):
    from PIL import Image

    y, x = np.mgrid[0:218, 0:178]
    face = np.stack([128 + 100 * np.sin(x / 9.0), 128 + 100 * np.cos(y / 7.0), (x + y) % 256], -1).astype(np.uint8)
    Image.fromarray(face).save(tmp_path / "a.jpg", quality=90)

    def full(size):  # decode at full scale, crop, resize: the reference pipeline
        with Image.open(tmp_path / "a.jpg") as img:
            img = img.convert("RGB").crop((19, 39, 159, 179)).resize((size, size), Image.BICUBIC)
            return np.asarray(img).transpose(2, 0, 1).astype(int)

    reduced = celeba.decode(tmp_path / "a.jpg", 32).astype(int)  # decoded at 1/2 scale: the 70 px crop is >= 2 x 32
    assert reduced.shape == (3, 32, 32) and np.abs(reduced - full(32)).mean() < 1.5
    assert np.abs(reduced - full(32)).max() < 24
    assert np.array_equal(celeba.decode(tmp_path / "a.jpg", 64), full(64))  # 70 px < 2 x 64: full scale, as before


def test_celeba_other_attribute_and_bad_attribute(root):
    smiling = rp.imagenet_celeba_pair(32, attribute="Smiling", name="celeba-smiling").load(str(root))
    assert smiling.info["label_names"] == ["not Smiling", "Smiling"]
    with pytest.raises(ValueError, match="unknown CelebA attribute 'Bearded'"):
        rp.imagenet_celeba_pair(32, attribute="Bearded").load(str(root))


@pytest.mark.hostile_case("a truncated MNIST idx file and a broken gzip name the file")
def test_truncated_idx_and_gzip_name_the_file(tmp_path):
    raw = tmp_path / "plain"
    write_mnist(raw, gz=False)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match=r"train-images-idx3-ubyte: truncated: header promises shape \(40, 28, 28\)"):
        mnist_idx.load_mnist(raw, "train")
    raw = tmp_path / "gz"
    write_mnist(raw)
    path = raw / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: not a complete gzip stream"):
        mnist_idx.load_mnist(raw, "test")


@pytest.mark.hostile_case("a malformed SVHN .mat file names the file")
def test_malformed_mat_names_the_file(tmp_path):
    write_svhn(tmp_path)
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CorruptFileError, match="train_32x32.mat: "):
        svhn_mat.load_svhn(tmp_path)
    path.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(CorruptFileError, match="train_32x32.mat: not a readable MATLAB"):
        svhn_mat.load_svhn(tmp_path)
    import scipy.io
    scipy.io.savemat(path, {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(CorruptFileError, match=r"X has shape \(28, 28, 3, 2\), expected \(32, 32, 3, N\)"):
        svhn_mat.load_svhn(tmp_path)


@pytest.mark.hostile_case("corrupt files are reported by `dpbench data check`")
def test_corrupt_files_reported_by_check_files(tmp_path):
    write_all(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    npz = tmp_path / "Imagenet32_train_npz" / "train_data_batch_2.npz"
    npz.write_bytes(npz.read_bytes()[:-200])
    statuses = {s.path: s for s in PAIRS["imagenet32-cifar10"].check_files(str(tmp_path))}
    assert statuses[str(batch)].status == "corrupt" and "not a readable CIFAR pickle" in statuses[str(batch)].detail
    assert statuses[str(npz)].status == "corrupt" and "truncated" in statuses[str(npz)].detail
    with pytest.raises(CorruptFileError, match="train_data_batch_2.npz: not a readable npz/zip file"):
        PAIRS["imagenet32-cifar10"].load(str(tmp_path))


def test_check_files_on_an_empty_root_lists_exact_paths(tmp_path):
    statuses = PAIRS["svhn-mnist"].check_files(str(tmp_path))
    assert [(s.path, s.status) for s in statuses] == [
        (str(tmp_path / "svhn/train_32x32.mat"), "missing"),
        (str(tmp_path / "MNIST/raw/train-images-idx3-ubyte.gz"), "missing"),
        (str(tmp_path / "MNIST/raw/train-labels-idx1-ubyte.gz"), "missing"),
        (str(tmp_path / "MNIST/raw/t10k-images-idx3-ubyte.gz"), "missing"),
        (str(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz"), "missing"),
    ]
    cifar = [s.path for s in PAIRS["imagenet32-cifar10"].check_files(str(tmp_path))]
    assert cifar == [str(tmp_path / f"Imagenet32_train_npz/train_data_batch_{i}.npz") for i in range(1, 11)] + [
        str(tmp_path / f"cifar-10-batches-py/{n}")
        for n in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")
    ]
    celeba_paths = [s.path for s in PAIRS["imagenet-celeba"].check_files(str(tmp_path))]
    assert celeba_paths[-4:] == [str(tmp_path / "Imagenet32_val_npz/val_data.npz")] + [
        str(tmp_path / "celeba" / n) for n in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
    ]
    # A run's load says the same, every path, and how to get them.
    for name, pair in PAIRS.items():
        with pytest.raises(DataMissingError) as err:
            pair.load(str(tmp_path))
        message = str(err.value)
        assert all(s.path in message for s in pair.check_files(str(tmp_path))), name
    assert "cannot be downloaded automatically" in message and "missing" in message


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert rp.resolve_data_root(None) == tmp_path
    assert rp.resolve_data_root("/elsewhere") == Path("/elsewhere")
    assert PAIRS["svhn-mnist"].check_files(None)[0].path == str(tmp_path / "svhn/train_32x32.mat")


@pytest.mark.parametrize("compressed", [False, True])
def test_imagenet32_npz_memory_maps_stored_members(tmp_path, compressed):
    write_imagenet32(tmp_path, compressed=compressed)
    data, labels = imagenet32_npz.read_batch(tmp_path / "Imagenet32_train_npz/train_data_batch_1.npz")
    assert isinstance(data, np.memmap) != compressed
    assert data.shape == (40, 3072) and labels.dtype == np.int64 and labels.min() >= 1
    subset, warnings = imagenet32_npz.select_classes(tmp_path, [c.devkit_id for c in TABLE_I])
    assert len(subset) == 100 and any("ImageNet32 train: 400 images" in w for w in warnings)


@pytest.mark.parametrize("compressed", [False, True])
def test_imagenet32_whole_split_is_every_batch_file_in_order(tmp_path, compressed):
    write_imagenet32(tmp_path, compressed=compressed)
    whole, _ = imagenet32_npz.load_split(tmp_path, "train")  # copied batch by batch into one preallocated tensor
    batches = [imagenet32_npz.read_batch(p) for p in imagenet32_npz.split_paths(tmp_path, "train")]
    assert whole.images.shape == (sum(len(l) for _, l in batches), 3, 32, 32) and whole.images.dtype == torch.uint8
    assert np.array_equal(whole.images.reshape(len(whole), -1).numpy(), np.concatenate([d for d, _ in batches]))
    assert np.array_equal(whole.labels.numpy(), np.concatenate([l for _, l in batches]) - 1)


def test_to_gray_in_chunks_is_pils_luma_for_every_image():
    from PIL import Image

    rgb = torch.randint(0, 256, (23, 3, 5, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    gray = rp.to_gray(rgb, chunk=5)  # chunk boundaries inside the batch, and a short last chunk
    pil = np.stack([np.asarray(Image.fromarray(x.permute(1, 2, 0).numpy()).convert("L")) for x in rgb])
    assert gray.shape == (23, 1, 5, 4) and gray.dtype == torch.uint8
    assert np.abs(gray[:, 0].numpy().astype(int) - pil.astype(int)).max() <= 1
    assert torch.equal(gray, rp.to_gray(rgb, chunk=1000))


@pytest.mark.hostile_case("ImageNet32 npz labels off by one are refused")
def test_imagenet32_zero_based_labels_are_rejected(tmp_path):
    path = tmp_path / "Imagenet32_val_npz" / "val_data.npz"
    path.parent.mkdir()
    np.savez(path, data=np.zeros((3, 3072), np.uint8), labels=np.array([0, 1, 2]))
    with pytest.raises(CorruptFileError, match=r"val_data.npz: labels outside 1..1000 \(0..2\)"):
        imagenet32_npz.read_batch(path)
    np.savez(path, data=np.zeros((3, 1024), np.uint8), labels=np.array([1, 2, 3]))
    with pytest.raises(CorruptFileError, match=r"'data' is uint8 \(3, 1024\), expected uint8 \(N, 3072\)"):
        imagenet32_npz.read_batch(path)


def test_table_i_devkit_ids():
    by_name = {c.name: c for c in TABLE_I}
    # ILSVRC2012_ID (devkit meta.mat / map_clsloc.txt) -> wnid, and the CIFAR-10 class each stands for.
    expected = {
        "airliner": ("n02690373", 230, 0), "wagon": ("n02814533", 266, 1), "hummingbird": ("n01833805", 415, 2),
        "Siamese cat": ("n02123597", 95, 3), "hartebeest": ("n02422106", 65, 4),
        "golden retriever": ("n02099601", 125, 5), "tailed frog": ("n01644900", 501, 6), "sorrel": ("n02389026", 39, 7),
        "container ship": ("n03095699", 243, 8), "trailer truck": ("n04467665", 283, 9),
    }
    assert {n: (c.wnid, c.devkit_id, c.cifar10_index) for n, c in by_name.items()} == expected
    assert sorted(DEVKIT_TO_CIFAR10.values()) == list(range(10))
    # The sorted-wnid table (torchvision/Keras: 404 airliner, 207 golden retriever ...) is a different order:
    # its index is never the devkit id, nor devkit id - 1, for any of the ten.
    assert by_name["airliner"].sorted_index == 404 and by_name["golden retriever"].sorted_index == 207
    assert all(c.sorted_index not in (c.devkit_id, c.devkit_id - 1) for c in TABLE_I)
    assert [c.wnid for c in sorted(TABLE_I, key=lambda c: c.sorted_index)] == sorted(c.wnid for c in TABLE_I)


@pytest.mark.hostile_case("a corrupt CelebA JPEG names the file")
def test_corrupt_celeba_jpg_names_the_file(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CorruptFileError, match="000002.jpg: not a readable image"):
        celeba.load_celeba(tmp_path, 32)
    (tmp_path / "img_align_celeba" / "000003.jpg").unlink()
    [status] = [s for s in celeba.check_celeba(tmp_path) if s.path.endswith("img_align_celeba")]
    assert status.status == "corrupt" and "1 of the 12 images" in status.detail


def test_celeba_decoded_by_worker_processes_matches_one_process_and_names_a_corrupt_file(tmp_path, monkeypatch):
    write_celeba(tmp_path)
    paths = sorted((tmp_path / "img_align_celeba").glob("*.jpg"))
    in_order = np.stack([celeba.decode(p, 32) for p in paths])
    monkeypatch.setattr(celeba, "DECODE_CHUNK", 5)  # 12 files: three chunks over the worker processes
    assert np.array_equal(celeba.decode_all(paths, 32), in_order)
    paths[7].write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CorruptFileError, match=f"{paths[7].name}: not a readable image"):
        celeba.decode_all(paths, 32)


def test_gzip_and_plain_idx_read_the_same(tmp_path):
    write_mnist(tmp_path / "a", gz=True)
    write_mnist(tmp_path / "b", gz=False)
    a, _ = mnist_idx.load_mnist(tmp_path / "a", "test")
    b, _ = mnist_idx.load_mnist(tmp_path / "b", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert gzip.decompress((tmp_path / "a/t10k-labels-idx1-ubyte.gz").read_bytes()) == (tmp_path / "b/t10k-labels-idx1-ubyte").read_bytes()


@pytest.mark.hostile_case("a CIFAR pickle carrying code is refused (numpy arrays only)")
def test_cifar_pickles_load_numpy_arrays_only(tmp_path):
    from dpbench.data.readers import cifar_pickle
    from tests.fixtures_real import write_cifar10

    write_cifar10(tmp_path)
    assert b"numpy.core.multiarray" in (tmp_path / "data_batch_1").read_bytes()
    train, _ = cifar_pickle.load_cifar10(tmp_path, "train")
    assert train.images.shape == (550, 3, 32, 32) and cifar_pickle.read_meta(tmp_path / "batches.meta")[9] == "truck"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(CorruptFileError, match="test_batch: not a readable CIFAR pickle .*refusing to load"):
        cifar_pickle.load_cifar10(tmp_path, "test")


def test_download_fetches_only_what_is_missing(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from tests.fixtures_real import write_cifar10

    calls = []
    monkeypatch.setattr(tvd, "MNIST", lambda root, train, download: calls.append(("MNIST", train)) or write_mnist(Path(root) / "MNIST/raw"))
    monkeypatch.setattr(tvd, "SVHN", lambda root, split, download: calls.append(("SVHN", split)) or write_svhn(Path(root)))
    monkeypatch.setattr(tvd, "CIFAR10", lambda *a, **k: calls.append("CIFAR10"))
    PAIRS["svhn-mnist"].download(str(tmp_path))
    assert calls == [("SVHN", "train"), ("MNIST", True), ("MNIST", False)]
    PAIRS["svhn-mnist"].download(str(tmp_path))  # everything present: nothing fetched again
    assert len(calls) == 3
    write_cifar10(tmp_path / "cifar-10-batches-py")
    with pytest.raises(DataMissingError, match="ImageNet32: cannot be downloaded automatically"):
        PAIRS["imagenet32-cifar10"].download(str(tmp_path))
    assert "CIFAR10" not in calls  # a user's own copy is never overwritten


def test_imagenet_celeba_from_a_downsampled_folder(root, tmp_path):
    from PIL import Image

    for wnid in ("n01440764", "n01443537"):
        (tmp_path / "imagenet_folder" / wnid).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (80, 64), (i * 40, 0, 0)).save(tmp_path / "imagenet_folder" / wnid / f"{i}.png")
    (tmp_path / "celeba").symlink_to(root / "celeba")
    pair = rp.imagenet_celeba_pair(64, public="folder", name="folder-celeba-64")
    data = pair.load(str(tmp_path))
    assert data.public_train.images.shape == (6, 3, 64, 64) and sorted(data.public_train.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert sum(len(c) for c in data.info["public_unconditional"](chunk_size=4)) == 6
    assert [s.status for s in pair.check_files(str(tmp_path))][0] == "present"
