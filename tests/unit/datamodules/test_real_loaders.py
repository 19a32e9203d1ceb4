"""Real-format loaders in datamodules/ood/real.py, run on tiny fixture trees in the exact
distributed formats (tests/helpers/fixtures.py)."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datamodules.ood.real import (
    OOD_LAYOUTS,
    CIFARPickles,
    ImageFolderFlat,
    ImageNetFolder,
    SVHNMat,
    build_id_set,
    build_ood_set,
    list_images,
)
from tests.helpers import fixtures as fx
from zoo.core.errors import ZooError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data root holding every layout (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("data")
    fx.write_cifar10(root, n_train_per_batch=4, n_test=6)
    fx.write_cifar100(root, n_train=8, n_test=6)
    fx.write_svhn_mat(root, n=30)
    fx.write_flat_folder(root / "LSUN" / "test", 5, ext="jpg")
    fx.write_isun(root, n=4)
    fx.write_lsun_resize(root, n=3)
    fx.write_dtd(root, classes=3, per_class=2)
    fx.write_places(root, 12)
    fx.write_imagenet_ood(root, n=4)
    fx.write_imagefolder(root / "imagenet" / "train", ["n02", "n01", "n03"], per_class=2)
    fx.write_imagefolder(root / "imagenet" / "val", ["n02", "n01", "n03"], per_class=1)
    return root


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


# ------------------------------------------------------------------------------------ CIFAR


def test_cifar10_counts_labels_classes(data_root: Path) -> None:
    train = CIFARPickles(str(data_root), "cifar10", train=True)
    test = CIFARPickles(str(data_root), "cifar10", train=False)
    assert len(train) == 20 and len(test) == 6
    assert train.classes == fx.CIFAR10_NAMES
    assert [train[i]["label"] for i in range(20)] == [i % 10 for i in range(20)]
    item = test[3]
    assert set(item) == {"image", "label"} and item["label"] == 3
    assert isinstance(item["image"], Image.Image) and item["image"].mode == "RGB" and item["image"].size == (32, 32)


@pytest.mark.parametrize("n,row,col", [(0, 0, 0), (5, 3, 7), (13, 31, 2), (19, 10, 29)])
def test_cifar10_channel_order(data_root: Path, n: int, row: int, col: int) -> None:
    ds = CIFARPickles(str(data_root), "cifar10", train=True)
    assert ds[n]["image"].getpixel((col, row)) == fx.cifar_pixel(n, row, col)


def test_cifar100_fine_labels(data_root: Path) -> None:
    train = build_id_set("cifar100", str(data_root), train=True)
    test = build_id_set("cifar100", str(data_root), train=False)
    assert isinstance(train, CIFARPickles)
    assert len(train) == 8 and len(test) == 6
    assert len(train.classes) == 100 and train.classes[7] == "fine_07"
    assert [train[i]["label"] for i in range(8)] == [(7 * i) % 100 for i in range(8)]
    assert test[2]["image"].getpixel((4, 1)) == fx.cifar_pixel(2, 1, 4)


def test_cifar_transform_and_collate(data_root: Path) -> None:
    ds = CIFARPickles(str(data_root), "cifar10", train=False, transform=_tensor)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.uint8
    assert batch["label"].tolist() == [0, 1, 2, 3]


def test_cifar_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="cifar-10-batches-py: not found; expected"):
        CIFARPickles(str(tmp_path), "cifar10", train=True)


def test_cifar_missing_batch_file(tmp_path: Path) -> None:
    d = fx.write_cifar10(tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(ZooError, match="data_batch_3: not found"):
        CIFARPickles(str(tmp_path), "cifar10", train=True)
    assert len(CIFARPickles(str(tmp_path), "cifar10", train=False)) == 6  # test split still fine


def test_cifar_bad_pickle_keys(tmp_path: Path) -> None:
    d = fx.write_cifar10(tmp_path)
    with open(d / "test_batch", "rb") as f:
        obj = pickle.load(f, encoding="latin1")
    del obj["labels"]
    with open(d / "test_batch", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(ZooError) as e:
        CIFARPickles(str(tmp_path), "cifar10", train=False)
    assert str(d / "test_batch") in str(e.value) and "'labels'" in str(e.value)


def test_cifar100_meta_wrong_key(tmp_path: Path) -> None:
    d = fx.write_cifar100(tmp_path)
    with open(d / "meta", "wb") as f:
        pickle.dump({"label_names": ["x"] * 100}, f, protocol=2)  # CIFAR-10 key in a CIFAR-100 meta
    with pytest.raises(ZooError, match="meta: missing key 'fine_label_names'"):
        CIFARPickles(str(tmp_path), "cifar100", train=False)


@pytest.mark.parametrize(
    "bad",
    [
        {"data": np.zeros((6, 3 * 32 * 31), np.uint8)},  # wrong width
        {"data": np.zeros((6, 3072), np.float32)},  # wrong dtype
        {"labels": [0, 1]},  # length mismatch
        {"labels": [0, 1, 2, 3, 4, 10]},  # out of range
    ],
)
def test_cifar_bad_shapes(tmp_path: Path, bad: dict) -> None:
    d = fx.write_cifar10(tmp_path, n_test=6)
    with open(d / "test_batch", "rb") as f:
        obj = pickle.load(f, encoding="latin1")
    obj.update(bad)
    with open(d / "test_batch", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(ZooError, match="test_batch: "):
        CIFARPickles(str(tmp_path), "cifar10", train=False)


def test_cifar_garbage_pickle(tmp_path: Path) -> None:
    d = fx.write_cifar10(tmp_path)
    (d / "batches.meta").write_bytes(b"\x00garbage")
    with pytest.raises(ZooError, match="batches.meta: cannot unpickle"):
        CIFARPickles(str(tmp_path), "cifar10", train=False)


# ------------------------------------------------------------------------------------- SVHN


def test_svhn_labels_and_pixels(data_root: Path) -> None:
    ds = SVHNMat(str(data_root))
    assert len(ds) == 30 and ds.classes == [str(d) for d in range(10)]
    # file labels are i % 10 + 1 in 1..10, and 10 means digit 0
    assert ds.targets == [(i % 10 + 1) % 10 for i in range(30)]
    assert ds[9]["label"] == 0 and ds[0]["label"] == 1
    img = ds[7]["image"]
    assert img.mode == "RGB" and img.size == (32, 32) and img.getpixel((5, 20)) == (7, 14, 248)


def test_svhn_balanced_subset(tmp_path: Path) -> None:
    labels = [10, 1, 10, 2, 10] + [i % 10 + 1 for i in range(40)]
    fx.write_svhn_mat(tmp_path, n=len(labels), labels=labels)
    ds = SVHNMat(str(tmp_path), balanced_per_class=2)
    assert len(ds) == 20
    assert sorted(ds.targets) == sorted(list(range(10)) * 2)
    # the first two zeros are file rows 0 and 2 -> pixel red value = row index
    zeros = [ds[i]["image"].getpixel((0, 0))[0] for i in range(len(ds)) if ds.targets[i] == 0]
    assert zeros == [0, 2]
    # file order is preserved
    reds = [ds[i]["image"].getpixel((0, 0))[0] for i in range(len(ds))]
    assert reds == sorted(reds)
    with pytest.warns(UserWarning, match="fewer than 10 images"):
        assert len(SVHNMat(str(tmp_path), balanced_per_class=10)) == 45


def test_svhn_alternate_layouts(tmp_path: Path) -> None:
    path = fx.write_svhn_mat(tmp_path, n=10, subdir=False)
    assert path == tmp_path / "test_32x32.mat"
    assert len(SVHNMat(str(tmp_path))) == 10
    assert len(SVHNMat(str(path))) == 10
    assert SVHNMat(str(path), as_ood=True)[3]["label"] == -1


def test_svhn_missing_and_bad_keys(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match=r"svhn/test_32x32\.mat: not found"):
        SVHNMat(str(tmp_path))
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(ZooError, match=r"test_32x32\.mat: missing key 'y'"):
        SVHNMat(str(tmp_path))
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(ZooError, match="labels 1..10"):
        SVHNMat(str(tmp_path))


# ------------------------------------------------------------------------------ flat folders


def test_flat_folder_recursive_sorted(tmp_path: Path) -> None:
    d = tmp_path / "flat"
    fx.write_flat_folder(d, 3, ext="jpg", start=10)
    fx.write_flat_folder(d / "b_sub", 2, ext="PNG")
    fx.write_flat_folder(d / "a_sub" / "deeper", 1, ext="JPEG", size=(40, 20))
    fx.write_flat_folder(d, 1, ext="webp", start=20)
    fx.write_image(d / "gray.bmp", mode="L")
    (d / "notes.txt").write_text("not an image")
    fx.write_corrupt_image(d / "._00010.jpg")  # macOS resource fork: hidden, skipped
    fx.write_flat_folder(d / ".cache", 1)  # hidden folder, skipped
    expected = [
        "00010.jpg", "00011.jpg", "00012.jpg", "00020.webp",
        "a_sub/deeper/00000.JPEG", "b_sub/00000.PNG", "b_sub/00001.PNG", "gray.bmp",
    ]
    assert list_images(d) == expected
    ds = ImageFolderFlat(str(d))
    assert ds.relpaths == expected and len(ds) == 8
    assert all(ds[i]["label"] == -1 for i in range(len(ds)))
    assert ds[4]["image"].size == (40, 20)
    assert ds[7]["image"].mode == "RGB"  # grayscale converted


def test_flat_folder_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("x")
    with pytest.raises(ZooError, match=f"{re.escape(str(tmp_path / 'empty'))}: no images found"):
        ImageFolderFlat(str(tmp_path / "empty"))
    with pytest.raises(ZooError, match=f"{re.escape(str(tmp_path / 'nope'))}: not found; expected"):
        ImageFolderFlat(str(tmp_path / "nope"))


def test_corrupt_jpeg_raises_on_getitem(tmp_path: Path) -> None:
    fx.write_flat_folder(tmp_path, 2)
    bad = fx.write_corrupt_image(tmp_path / "00001.jpg")
    ds = ImageFolderFlat(str(tmp_path))  # listing does not decode
    assert ds[0]["label"] == -1
    with pytest.raises(ZooError, match=rf"^{re.escape(str(bad))}: cannot read image \(.+\)$"):
        ds[1]


def test_truncated_jpeg_raises(tmp_path: Path) -> None:
    (path,) = fx.write_flat_folder(tmp_path, 1, size=64)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ZooError, match="cannot read image"):
        ImageFolderFlat(str(tmp_path))[0]


# ----------------------------------------------------------------------------------- Places


def test_places_subset_deterministic(data_root: Path) -> None:
    d = data_root / "Places" / "test_256"
    a = ImageFolderFlat(str(d), max_items=5, seed=0)
    b = ImageFolderFlat(str(d), max_items=5, seed=0)
    c = ImageFolderFlat(str(d), max_items=5, seed=1)
    assert len(a) == 5 and a.relpaths == b.relpaths == sorted(a.relpaths)
    assert set(a.relpaths) <= set(fx.places_names(12))
    assert c.relpaths != a.relpaths
    assert len(ImageFolderFlat(str(d), max_items=100)) == 12
    ds = build_ood_set("places365", str(data_root), max_items=5)
    assert ds is not None and ds.relpaths == a.relpaths
    assert len(build_ood_set("places365", str(data_root))) == 12  # default 10k cap > 12 files


def test_places_subset_stable_when_files_added(tmp_path: Path) -> None:
    fx.write_places(tmp_path, 12)
    before = set(ImageFolderFlat(str(tmp_path / "Places" / "test_256"), max_items=6).relpaths)
    fx.write_image(tmp_path / "Places" / "test_256" / "extra.jpg")
    after = set(ImageFolderFlat(str(tmp_path / "Places" / "test_256"), max_items=6).relpaths)
    assert len(before ^ after) <= 2  # at most one member swapped


def test_places_list_file(tmp_path: Path) -> None:
    fx.write_places(tmp_path, 6, subdir="places365/test_256")  # alternative layout
    lst = tmp_path / "places.txt"
    lst.write_text("# chosen\nPlaces365_test_00000004.jpg\n\nPlaces365_test_00000002.jpg\n")
    ds = build_ood_set("places365", str(tmp_path), list_file=str(lst))
    assert ds is not None and ds.relpaths == ["Places365_test_00000004.jpg", "Places365_test_00000002.jpg"]
    out = tmp_path / "saved.txt"
    ds.save_list(str(out))
    assert ImageFolderFlat(str(tmp_path / "places365" / "test_256"), list_file=str(out)).relpaths == ds.relpaths
    lst.write_text("Places365_test_00000004.jpg\nmissing.jpg\n")
    with pytest.raises(ZooError, match=r"places\.txt: 1 of 2 listed files are missing"):
        build_ood_set("places365", str(tmp_path), list_file=str(lst))


# --------------------------------------------------------------------------------- ImageNet


def test_imagenet_folder(data_root: Path) -> None:
    train = build_id_set("imagenet", str(data_root / "imagenet"), train=True)
    val = ImageNetFolder(str(data_root / "imagenet"), "val")
    assert isinstance(train, ImageNetFolder)
    assert train.classes == ["n01", "n02", "n03"] and len(train) == 6 and len(val) == 3
    assert [train[i]["label"] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    item = val[1]
    assert item["label"] == 1 and item["image"].mode == "RGB" and item["image"].size == (20, 16)


def test_imagenet_missing_empty_corrupt(tmp_path: Path) -> None:
    val = re.escape(str(tmp_path / "val"))
    with pytest.raises(ZooError, match=f"{val}: not found; expected ImageNet layout"):
        ImageNetFolder(str(tmp_path), "val")
    (tmp_path / "val").mkdir()
    with pytest.raises(ZooError, match=f"{val}: no class folders"):
        ImageNetFolder(str(tmp_path), "val")
    (tmp_path / "val" / "n01").mkdir()
    with pytest.raises(ZooError, match=f"{val}: no class folders"):
        ImageNetFolder(str(tmp_path), "val")
    bad = fx.write_corrupt_image(tmp_path / "val" / "n01" / "x.JPEG")
    ds = ImageNetFolder(str(tmp_path), "val")
    with pytest.raises(ZooError, match=f"{re.escape(str(bad))}: cannot read image"):
        ds[0]


def test_build_id_set_unknown(data_root: Path) -> None:
    with pytest.raises(ZooError, match="known: cifar10, cifar100, imagenet"):
        build_id_set("mnist", str(data_root), train=True)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ OOD registry


def test_ood_layout_names() -> None:
    assert set(OOD_LAYOUTS) == {
        "svhn", "lsun_c", "lsun_r", "isun", "textures", "places365", "inaturalist", "sun", "places",
    }


@pytest.mark.parametrize(
    "name,n",
    [("svhn", 30), ("lsun_c", 5), ("lsun_r", 3), ("isun", 4), ("textures", 6), ("places365", 12),
     ("inaturalist", 4), ("sun", 4), ("places", 4)],
)
def test_build_ood_set_counts(data_root: Path, name: str, n: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # svhn: the fixture has < 1,000 per digit
        ds = build_ood_set(name, str(data_root), transform=_tensor)
    assert ds is not None and len(ds) == n
    item = ds[n - 1]
    assert item["label"] == -1 and item["image"].dtype == torch.uint8 and item["image"].shape[0] == 3


def test_build_ood_set_svhn_default_balanced(data_root: Path) -> None:
    with pytest.warns(UserWarning, match="fewer than 1000"):
        ds = build_ood_set("svhn", str(data_root))
    assert isinstance(ds, SVHNMat) and ds.targets[:3] == [1, 2, 3]
    assert len(build_ood_set("svhn", str(data_root), balanced_per_class=2)) == 20


def test_build_ood_set_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="unknown OOD set 'cifar'; known: svhn, lsun_c"):
        build_ood_set("cifar", str(tmp_path))
    isun = re.escape(str(tmp_path / "iSUN" / "iSUN_patches"))
    with pytest.warns(UserWarning, match=f"skipping OOD set 'isun': {isun}: not found"):
        assert build_ood_set("isun", str(tmp_path)) is None
    with pytest.raises(ZooError, match=f"^{isun}: not found; expected iSUN"):
        build_ood_set("isun", str(tmp_path), strict=True)
    p1, p2 = (re.escape(str(tmp_path / d / "test_256")) for d in ("Places", "places365"))
    with pytest.raises(ZooError, match=rf"^{p1} \(or {p2}\): not found"):
        build_ood_set("places365", str(tmp_path), strict=True)
    with pytest.raises(ZooError, match=r"svhn/test_32x32\.mat \(or .*test_32x32\.mat\): not found"):
        build_ood_set("svhn", str(tmp_path), strict=True)
    (tmp_path / "dtd" / "images" / "banded").mkdir(parents=True)  # present but empty: an error
    with pytest.raises(ZooError, match=f"{re.escape(str(tmp_path / 'dtd' / 'images'))}: no images found"):
        build_ood_set("textures", str(tmp_path))
