"""Few-shot data layer (datamodules/fewshot) on tiny trees in CoOp's on-disk layouts
(tests/helpers/fewshot_fixtures.py)."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from datamodules.fewshot.base import CLIP_MEAN, FewShotDataModule, ImageFileDataset, fewshot_train_transform
from datamodules.fewshot.real import (
    DATASETS,
    Datum,
    FullSplit,
    class_names_from_arg,
    fewshot,
    read_split,
    sample_few_shot,
    subsample_classes,
)
from datamodules.ood.base import eval_transform
from tests.helpers import fewshot_fixtures as fx
from zoo.core.errors import ZooError

CLASSES = ["alpha cat", "beta_dog", "gamma", "delta", "epsilon"]  # 5 -> base 3, new 2
CLEAN = [c.replace("_", " ") for c in CLASSES]
WNIDS = [("n03", "tench fish"), ("n01", "goldfish"), ("n02", "great white shark")]  # unsorted on purpose
VARIANTS = ["707-320", "A300B4", "F-16A/B", "Cessna 172"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One read-only root holding every dataset (JSON datasets: 4/2/2 images per class)."""
    root = tmp_path_factory.mktemp("fewshot_data")
    for key in fx.JSON_DATASETS:
        fx.write_split_zhou(root, key, CLASSES, per_class=(6, 5, 2))
    fx.write_imagenet(root, WNIDS, train_per_class=6, val_per_class=3)
    fx.write_fgvc_aircraft(root, VARIANTS, per_class=(4, 2, 2))
    return root


def _counts(data: list[Datum]) -> Counter:
    return Counter(d.label for d in data)


# ------------------------------------------------------------------------------------ readers


@pytest.mark.parametrize("key", list(DATASETS))
def test_every_dataset_reads(data_root: Path, key: str) -> None:
    full = read_split(str(data_root), key)
    assert full.dataset == key and full.comparable and full.note == ""
    assert all(os.path.isabs(d.path) and os.path.isfile(d.path) for d in full.train + full.val + full.test)
    assert all(d.classname == full.classnames[d.label] for d in full.train + full.val + full.test)
    if key == "imagenet":
        assert full.classnames == [n for _, n in WNIDS]
        assert _counts(full.train) == {0: 6, 1: 6, 2: 6} and full.val == full.test and len(full.test) == 9
        # labels follow classnames.txt, not the sorted wnid order
        assert all("/n03/" in d.path for d in full.train if d.label == 0)
    elif key == "fgvc_aircraft":
        assert full.classnames == VARIANTS
        assert (len(full.train), len(full.val), len(full.test)) == (16, 8, 8)
        assert all(d.path.endswith(".jpg") and "/images/" in d.path for d in full.train)
    else:
        assert full.classnames == CLEAN  # "_" -> " "
        assert (len(full.train), len(full.val), len(full.test)) == (30, 25, 10)
        assert _counts(full.train) == {y: 6 for y in range(5)}
    assert "{}" in DATASETS[key].template


def test_stanford_cars_paths_relative_to_folder(data_root: Path) -> None:
    full = read_split(str(data_root), "stanford_cars")
    base = str(data_root / "stanford_cars") + os.sep
    assert all(d.path.startswith(base + "cars_train" + os.sep) for d in full.train + full.val)
    assert all(d.path.startswith(base + "cars_test" + os.sep) for d in full.test)


# CoOp's zero-shot CLIP hand prompts (CUSTOM_TEMPLATES of KaiyangZhou/CoOp trainers/zsclip.py), which
# the published zero-shot numbers use; keyed here by the zoo's dataset names.
COOP_ZERO_SHOT_TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet": "a photo of a {}.",
}


def test_templates_match_coop() -> None:
    assert {k: DATASETS[k].template for k in COOP_ZERO_SHOT_TEMPLATES} == COOP_ZERO_SHOT_TEMPLATES
    assert DATASETS["shapes_b2n"].template == "a photo of a {}."
    assert DATASETS["caltech101"].folder == "caltech-101" and DATASETS["stanford_cars"].image_dir == ""


def test_template_is_a_datamodule_argument(data_root: Path) -> None:
    assert FewShotDataModule(root=str(data_root), dataset="dtd").template == "{} texture."
    dm = FewShotDataModule(root=str(data_root), dataset="dtd", template="a photo of a {}, a type of texture.")
    assert dm.template == "a photo of a {}, a type of texture."
    for bad in ("a photo", "{} and {}"):
        with pytest.raises(ZooError, match=r"^--data\.init_args\.template must hold '\{\}' once"):
            FewShotDataModule(root=str(data_root), dataset="dtd", template=bad)


# ------------------------------------------------------------------------------------ few-shot


def _split(n_cls: int = 5, per: int = 10, val_per: int = 6) -> FullSplit:
    names = [f"c{y}" for y in range(n_cls)]
    mk = lambda tag, k: [Datum(f"/d/{tag}/{y}_{i}.jpg", y, names[y]) for i in range(k) for y in range(n_cls)]
    return FullSplit(mk("train", per), mk("val", val_per), mk("test", 3), names, "toy", base_dir="/d")


def test_sample_few_shot_deterministic_and_k_per_class() -> None:
    data = _split().train
    a, b, c = sample_few_shot(data, 4, 1), sample_few_shot(data, 4, 1), sample_few_shot(data, 4, 2)
    assert a == b and a != c
    assert _counts(a) == {y: 4 for y in range(5)} and len(set(a)) == 20
    assert [d.label for d in a[:4]] == [0] * 4  # grouped by label in order of first appearance
    assert sample_few_shot(data, -1, 1) == data and sample_few_shot(data, 0, 1) == data
    assert _counts(sample_few_shot(data, 50, 1)) == {y: 10 for y in range(5)}  # fewer -> all, no repeats


def test_fewshot_train_k_val_min_k_4_one_stream() -> None:
    full = _split()
    few = fewshot(full, 8, seed=3, cache_dir=None)
    assert _counts(few.train) == {y: 8 for y in range(5)}
    assert _counts(few.val) == {y: 4 for y in range(5)}
    assert few.test == full.test and few.classnames == full.classnames
    assert few.train == sample_few_shot(full.train, 8, 3)  # train is drawn first from the seed's stream
    assert few.val != sample_few_shot(full.val, 4, 3)  # ... and val continues that stream
    assert _counts(fewshot(full, 2, 3).val) == {y: 2 for y in range(5)}
    assert fewshot(full, -1, 3).train == full.train


def test_fewshot_imagenet_val_is_test(data_root: Path) -> None:
    full = read_split(str(data_root), "imagenet")
    few = fewshot(full, 2, 1)
    assert _counts(few.train) == {0: 2, 1: 2, 2: 2} and few.val == full.test and few.test == full.test


def test_subsample_base_new_rule() -> None:
    few = fewshot(_split(), 2, 1)
    base, new, allc = (subsample_classes(few, w) for w in ("base", "new", "all"))
    assert base.classnames == ["c0", "c1", "c2"] and new.classnames == ["c3", "c4"]
    assert sorted(_counts(base.train)) == [0, 1, 2] and sorted(_counts(new.test)) == [0, 1]
    assert all(d.classname == new.classnames[d.label] for d in new.train + new.val + new.test)
    assert [d.path for d in new.test] == [d.path for d in few.test if d.label >= 3]
    assert allc.train == few.train
    odd = subsample_classes(fewshot(_split(n_cls=4), 1, 1), "base")
    assert odd.classnames == ["c0", "c1"]


def test_sampling_before_base_new_split(data_root: Path, tmp_path: Path) -> None:
    """The base-class train items are the same whether training on base or all classes."""
    kw = dict(root=str(data_root), dataset="oxford_pets", num_shots=2, seed=5, num_workers=0, cache_dir=str(tmp_path))
    dm_base, dm_all = FewShotDataModule(**kw), FewShotDataModule(**kw, train_classes="all")
    dm_base.setup(), dm_all.setup()
    base_paths = sorted(d.path for d in dm_base.split("base").train)
    all_base = sorted(d.path for d in dm_all.split("all").train if d.label < 3)
    assert base_paths == all_base and len(base_paths) == 6
    assert len(dm_all.train_dataloader().dataset) == 10 and len(dm_base.train_dataloader().dataset) == 6


# ------------------------------------------------------------------------------------ cache


def test_cache_round_trip_and_stale(data_root: Path, tmp_path: Path) -> None:
    full = read_split(str(data_root), "dtd")
    first = fewshot(full, 2, 7, cache_dir=str(tmp_path))
    path = tmp_path / "fewshot" / "dtd" / "shot_2-seed_7.json"
    raw = json.loads(path.read_text())
    assert raw["train"][0] == os.path.relpath(first.train[0].path, data_root / "dtd")
    assert not [p for p in os.listdir(path.parent) if p != path.name]  # no temp files left
    # the second call reads the file: plant another valid draw and get it back
    other = fewshot(full, 2, 8)
    raw["train"] = [os.path.relpath(d.path, data_root / "dtd") for d in other.train]
    path.write_text(json.dumps(raw))
    assert fewshot(full, 2, 7, cache_dir=str(tmp_path)).train == other.train
    # stale: a path that is not in the split -> redrawn (= the seed's draw) and rewritten
    raw["train"][0] = "images/gone/x.jpg"
    path.write_text(json.dumps(raw))
    assert fewshot(full, 2, 7, cache_dir=str(tmp_path)).train == first.train
    assert json.loads(path.read_text())["train"][0] == os.path.relpath(first.train[0].path, data_root / "dtd")
    # stale: wrong number of shots per class
    raw = json.loads(path.read_text())
    raw["train"] = raw["train"][:-1]
    path.write_text(json.dumps(raw))
    assert fewshot(full, 2, 7, cache_dir=str(tmp_path)).train == first.train
    path.write_text("{not json")
    assert fewshot(full, 2, 7, cache_dir=str(tmp_path)).train == first.train


# ------------------------------------------------------------------------------------ fallback


def test_fallback_class_folders(tmp_path: Path) -> None:
    fx.write_class_folders(tmp_path, "caltech101", ["accordion", "Faces", "BACKGROUND_Google", "Faces_easy", "ant_x"])
    with pytest.warns(UserWarning, match="not comparable"):
        full = read_split(str(tmp_path), "caltech101")
    assert not full.comparable and "split_zhou_Caltech101.json not found under" in full.note
    assert "50/20/30" in full.note
    assert full.classnames == ["face", "accordion", "ant x"]  # sorted folders, CoOp's renames, "_" -> " "
    assert _counts(full.train) == {0: 5, 1: 5, 2: 5} and _counts(full.val) == {0: 2, 1: 2, 2: 2}
    assert _counts(full.test) == {0: 3, 1: 3, 2: 3}
    assert len({d.path for d in full.train + full.val + full.test}) == 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = read_split(str(tmp_path), "caltech101")
    assert again.train == full.train and again.val == full.val and again.test == full.test


@pytest.mark.parametrize("key", ["food101", "dtd", "eurosat", "ucf101", "shapes_b2n"])
def test_fallback_other_folder_datasets(tmp_path: Path, key: str) -> None:
    fx.write_class_folders(tmp_path, key, ["b_class", "a_class"], per_class=6)
    with pytest.warns(UserWarning):
        full = read_split(str(tmp_path), key)
    assert full.classnames == ["a class", "b class"] and not full.comparable
    assert (len(full.train), len(full.val), len(full.test)) == (6, 2, 4)


def test_fallback_flowers(tmp_path: Path) -> None:
    fx.write_flowers_fallback(tmp_path, ["pink primrose", "globe thistle", "moon orchid"], per_class=10)
    with pytest.warns(UserWarning, match="split_zhou_OxfordFlowers.json"):
        full = read_split(str(tmp_path), "oxford_flowers")
    assert full.classnames == ["pink primrose", "globe thistle", "moon orchid"] and not full.comparable
    assert _counts(full.train) == {0: 5, 1: 5, 2: 5} and len(full.val) == 6 and len(full.test) == 9
    # image k has label labels[k-1]: the fixture interleaves classes, so image_00002 is class 1
    assert all(int(re.search(r"image_(\d+)", d.path).group(1)) % 3 == (d.label + 1) % 3 for d in full.train)


# ------------------------------------------------------------------------------------ errors


def test_error_unknown_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="unknown dataset 'cifar'.*oxford_pets"):
        read_split(str(tmp_path), "cifar")
    with pytest.raises(ZooError, match=re.escape(str(tmp_path / "oxford_pets")) + ": not found"):
        read_split(str(tmp_path), "oxford_pets")
    with pytest.raises(ZooError, match=r"--data\.init_args\.dataset: unknown dataset 'nope'; expected 'folder'"):
        FewShotDataModule(root=str(tmp_path), dataset="nope")


def test_error_json_required(tmp_path: Path) -> None:
    (tmp_path / "stanford_cars").mkdir()
    with pytest.raises(ZooError, match=r"split_zhou_StanfordCars\.json: not found; stanford_cars needs"):
        read_split(str(tmp_path), "stanford_cars")


def test_error_missing_paths(tmp_path: Path) -> None:
    js = fx.write_split_zhou(tmp_path, "eurosat", ["a", "b"], per_class=(3, 1, 1))
    img = tmp_path / "eurosat" / "2750"
    for p in sorted(img.rglob("*.jpg"))[:4]:
        p.unlink()
    with pytest.raises(ZooError) as e:
        read_split(str(tmp_path), "eurosat")
    msg = str(e.value)
    assert msg.startswith(str(js)) and "4 of 10 image paths do not exist" in msg and "\n" not in msg
    assert msg.count(str(img)) >= 3


def _json(tmp_path: Path, rows: dict) -> None:
    fx.write_split_zhou(tmp_path, "dtd", ["a", "b", "c"], per_class=(1, 1, 1))
    p = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    raw = json.loads(p.read_text())
    for k, fn in rows.items():
        raw[k] = fn(raw[k])
    p.write_text(json.dumps(raw))


def test_error_inconsistent_classname(tmp_path: Path) -> None:
    _json(tmp_path, {"test": lambda rows: [[r[0], r[1], "zzz" if r[1] == 1 else r[2]] for r in rows]})
    with pytest.raises(ZooError, match=r"split_zhou_DescribableTextures\.json: label 1 has two class names"):
        read_split(str(tmp_path), "dtd")


def test_error_duplicate_classnames(tmp_path: Path) -> None:
    _json(tmp_path, {k: (lambda rows: [[r[0], r[1], "a" if r[1] == 2 else r[2]] for r in rows])
                     for k in ("train", "val", "test")})
    with pytest.raises(ZooError, match=r"DescribableTextures\.json: duplicate class names: 'a' \(labels 0, 2\)"):
        read_split(str(tmp_path), "dtd")


def test_error_empty_class(tmp_path: Path) -> None:
    _json(tmp_path, {"train": lambda rows: [r for r in rows if r[1] != 1]})
    with pytest.raises(ZooError, match=r"DescribableTextures\.json: 1 class\(es\) have no train items: 'b'"):
        read_split(str(tmp_path), "dtd")


def test_error_fallback_empty_class_folder(tmp_path: Path) -> None:
    img = fx.write_class_folders(tmp_path, "dtd", ["a", "b"], per_class=5)
    (img / "c").mkdir()
    with pytest.raises(ZooError, match=re.escape(str(img)) + r": 1 class\(es\) have no images: \['c'\]"):
        read_split(str(tmp_path), "dtd")


def test_error_imagenet_and_fgvc(tmp_path: Path) -> None:
    d = fx.write_imagenet(tmp_path, WNIDS, train_per_class=1, val_per_class=1)
    (d / "images" / "train" / "n99").mkdir()
    with pytest.raises(ZooError, match=r"folders \['n99'\].*not listed in .*classnames\.txt"):
        read_split(str(tmp_path), "imagenet")
    (d / "classnames.txt").unlink()
    with pytest.raises(ZooError, match=r"classnames\.txt: not found"):
        read_split(str(tmp_path), "imagenet")
    f = fx.write_fgvc_aircraft(tmp_path, VARIANTS, per_class=(1, 1, 1))
    with open(f / "images_variant_val.txt", "a") as fh:
        fh.write("1234567 Boeing 999\n")
    with pytest.raises(ZooError, match=r"images_variant_val\.txt:5: variant 'Boeing 999' is not in"):
        read_split(str(tmp_path), "fgvc_aircraft")


def test_error_unreadable_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    ds = ImageFileDataset([Datum(str(bad), 0, "a")], lambda im: im)
    with pytest.raises(ZooError, match=re.escape(str(bad)) + ": cannot read image"):
        ds[0]


# ------------------------------------------------------------------------------------ datamodule


def test_datamodule_batches_and_spec(data_root: Path, tmp_path: Path) -> None:
    dm = FewShotDataModule(root=str(data_root), dataset="ucf101", num_shots=4, seed=1, image_size=16, batch_size=5,
                           eval_batch_size=8, num_workers=0, cache_dir=str(tmp_path))
    assert dm.template == "a photo of a person doing {}."
    dm.setup("fit")
    dm.setup("test")  # idempotent
    assert dm.classnames == {"base": CLEAN[:3], "new": CLEAN[3:], "all": CLEAN}
    assert dm.comparable and dm.note == ""
    train = dm.train_dataloader()
    assert train.drop_last and len(train.dataset) == 12
    b = next(iter(train))
    assert b["image"].shape == (5, 3, 16, 16) and b["image"].dtype == torch.float32
    assert b["label"].dtype == torch.long and int(b["label"].max()) < 3
    val = dm.val_dataloader()
    assert len(val.dataset) == 12  # min(4, 4) per base class
    tests = dm.test_dataloader()
    assert len(tests) == 2 and dm.test_set_names == ["base", "new"]
    assert [len(t.dataset) for t in tests] == [6, 4]
    tb = next(iter(tests[1]))
    assert tb["image"].shape == (4, 3, 16, 16) and set(tb["label"].tolist()) == {0, 1}
    spec = dm.eval_transform_spec()
    assert spec["interpolation"] == "bicubic" and spec["resize"] == spec["crop"] == 16
    assert spec["mean"] == list(CLIP_MEAN) and spec["classes"] == CLEAN[:3]
    assert (tmp_path / "fewshot" / "ucf101" / "shot_4-seed_1.json").is_file()


def test_datamodule_fallback_flag_and_default_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fx.write_class_folders(tmp_path / "data", "eurosat", ["Forest", "River", "SeaLake"], per_class=5)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    dm = FewShotDataModule(root=str(tmp_path / "data"), dataset="eurosat", num_shots=1, num_workers=0,
                           image_size=8, batch_size=4)
    with pytest.warns(UserWarning):
        dm.setup()
    assert not dm.comparable and "not comparable" in dm.note
    assert dm.classnames["all"] == ["Forest", "River", "Sea or Lake"]
    assert not dm.train_dataloader().drop_last  # 2 items < batch_size 4
    assert (tmp_path / "cache" / "fewshot" / "eurosat" / "shot_1-seed_1.json").is_file()


def test_transforms() -> None:
    from PIL import Image

    img = Image.new("RGB", (20, 12), (200, 30, 60))
    x = fewshot_train_transform(16)(img)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    spec = {"resize": 9, "crop": 9, "mean": [0.5] * 3, "std": [0.5] * 3}
    grad = Image.frombytes("L", (20, 12), bytes(range(0, 240))).convert("RGB")
    bil, bic = eval_transform(spec)(grad), eval_transform({**spec, "interpolation": "bicubic"})(grad)
    assert torch.equal(bil, eval_transform({**spec, "interpolation": "bilinear"})(grad))  # default unchanged
    assert not torch.equal(bil, bic)
    with pytest.raises(ValueError, match="interpolation"):
        eval_transform({**spec, "interpolation": "nearest-ish"})


def test_class_names_from_arg() -> None:
    assert class_names_from_arg(" cat, golden_retriever ,sea lion") == ["cat", "golden retriever", "sea lion"]
    with pytest.raises(ZooError, match=r"--classes: duplicate class names \['cat'\]"):
        class_names_from_arg("cat,dog,cat")
    with pytest.raises(ZooError, match="--classes: duplicate"):
        class_names_from_arg("sea_lion,sea lion")
    with pytest.raises(ZooError, match="empty class name"):
        class_names_from_arg("cat,,dog")
    with pytest.raises(ZooError, match="empty class name"):
        class_names_from_arg("")


# ------------------------------------------------------------------------------------ your own class folders

TREE_CLASSES = ["zebra", "Apple_pie", "cat", "dog", "emu"]  # sorted: Apple pie, cat, dog, emu, zebra


def test_folder_pool_uses_the_fallback_split_flagged(tmp_path: Path) -> None:
    root = fx.write_user_tree(tmp_path / "mine", TREE_CLASSES, per_class=10)
    with pytest.warns(UserWarning, match="not comparable"):
        full = read_split(str(root), "folder")
    assert full.classnames == ["Apple pie", "cat", "dog", "emu", "zebra"]  # sorted folder names, "_" -> " "
    assert not full.comparable and "no split_zhou_*.json" in full.note and "50/20/30" in full.note
    assert _counts(full.train) == {y: 5 for y in range(5)} and _counts(full.val) == {y: 2 for y in range(5)}
    assert _counts(full.test) == {y: 3 for y in range(5)}
    assert all(d.path.startswith(str(root / d.classname.replace(" ", "_"))) for d in full.train + full.test)
    assert full.dataset.startswith("folder-mine-") and full.base_dir == str(root)
    base, new = subsample_classes(full, "base"), subsample_classes(full, "new")
    assert base.classnames == ["Apple pie", "cat", "dog"] and new.classnames == ["emu", "zebra"]


def test_folder_pool_with_a_split_json_and_nested_images(tmp_path: Path) -> None:
    root = fx.write_user_tree(tmp_path / "mine", ["b", "a"], per_class=3)
    (root / "a" / "deeper").mkdir()
    fx.write_image(root / "a" / "deeper" / "x.png", 0, 9)
    split = {"train": [["a/a_000.png", 0, "a"], ["b/b_000.png", 1, "b"]], "val": [["a/deeper/x.png", 0, "a"]],
             "test": [["a/a_001.png", 0, "a"], ["b/b_001.png", 1, "b"], ["b/b_002.png", 1, "b"]]}
    (root / "split_zhou_Mine.json").write_text(json.dumps(split))
    full = read_split(str(root), "folder")
    assert full.comparable and full.note == "" and full.classnames == ["a", "b"]
    assert [os.path.relpath(d.path, root) for d in full.test] == ["a/a_001.png", "b/b_001.png", "b/b_002.png"]
    (root / "split_zhou_Other.json").write_text(json.dumps(split))
    with pytest.raises(ZooError, match=r"2 split files \(split_zhou_Mine\.json, split_zhou_Other\.json\); pick one "
                                       r"with --data\.init_args\.split_file"):
        read_split(str(root), "folder")
    assert len(read_split(str(root), "folder", split_file="split_zhou_Other.json").test) == 3
    for js in root.glob("*.json"):
        js.unlink()
    with pytest.warns(UserWarning, match="not comparable"):  # without a JSON: the fallback split
        pool = read_split(str(root), "folder")
    assert _counts(pool.train + pool.val + pool.test) == {0: 4, 1: 3}  # a/deeper/x.png is class a's too


def test_folder_train_test_val_layout(tmp_path: Path) -> None:
    root = fx.write_user_tree(tmp_path / "t", ["b", "a", "c"], per_class={"train": 4, "val": 2, "test": 3},
                              splits=("train", "val", "test"))
    full = read_split(str(root), "folder")
    assert full.comparable and full.note == "" and full.classnames == ["a", "b", "c"]
    assert _counts(full.train) == {0: 4, 1: 4, 2: 4} and _counts(full.val) == {0: 2, 1: 2, 2: 2}
    assert _counts(full.test) == {0: 3, 1: 3, 2: 3}
    assert all(f"{os.sep}test{os.sep}" in d.path for d in full.test)
    no_val = fx.write_user_tree(tmp_path / "nv", ["a", "b"], per_class=2, splits=("train", "test"))
    full = read_split(str(no_val), "folder")
    assert full.val == full.test and "validation uses the test images" in full.note and full.comparable


def test_folder_errors_are_one_line(tmp_path: Path) -> None:
    def err(root: Path, **kw) -> str:
        with pytest.raises(ZooError) as e:
            read_split(str(root), "folder", **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert err(tmp_path / "nope").startswith(f"{tmp_path / 'nope'}: not found; expected your class-folder tree")
    (tmp_path / "empty").mkdir()
    assert err(tmp_path / "empty") == (f"{tmp_path / 'empty'}: no class sub-folders; expected <root>/<class>/*.jpg, "
                                       "or <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg "
                                       "(optional <root>/val/<class>/)")
    fx.write_image(tmp_path / "loose" / "a.png", 0, 0)
    assert "found 1 image(s) directly in it but no class sub-folders" in err(tmp_path / "loose")
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    assert err(tmp_path / "hollow").startswith(f"{tmp_path / 'hollow'}: no images (.jpg")
    root = fx.write_user_tree(tmp_path / "one_empty", ["a", "b"], per_class=3)
    (root / "c").mkdir()
    assert err(root) == f"{root}: 1 class folder(s) have no images: ['c']; expected at least one image per class"
    root = fx.write_user_tree(tmp_path / "split", ["a", "b"], per_class=2, splits=("train",))
    assert err(root).startswith(f"{root / 'test'}: not found; expected test/<class>/*.jpg next to train/")
    fx.write_image(root / "test" / "z" / "0.png", 0, 0)
    assert "class folder(s) ['z'] are not in" in err(root)
    assert err(tmp_path / "split", split_file="s.json").startswith(f"{root / 's.json'}: not found")


def test_folder_datamodule_end_to_end(tmp_path: Path) -> None:
    root = fx.write_user_tree(tmp_path / "mine", TREE_CLASSES, per_class=10)
    dm = FewShotDataModule(root=str(root), num_shots=2, image_size=12, batch_size=4, eval_batch_size=5, num_workers=0,
                           cache_dir=str(tmp_path / "cache"), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert dm.dataset == "folder" and dm.template == "a photo of a {}."
    with pytest.warns(UserWarning, match="not comparable"):
        dm.setup("fit")
    assert not dm.comparable and dm.classnames["base"] == ["Apple pie", "cat", "dog"]
    assert dm.classnames["new"] == ["emu", "zebra"]
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 3, 12, 12) and set(b) == {"image", "label", "index"}
    tb = next(iter(dm.test_dataloader()[1]))
    assert tb["index"].tolist() == [0, 1, 2, 3, 4] and set(tb["label"].tolist()) <= {0, 1}
    spec = dm.eval_transform_spec()
    assert spec["mean"] == [0.5] * 3 and spec["std"] == [0.25] * 3 and spec["resize"] == 12
    # normalisation from the arguments: a constant-colour test image maps to (v/255 - 0.5)/0.25
    from PIL import Image

    x = eval_transform(spec)(Image.new("RGB", (12, 12), (255, 128, 0)))
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([2.0, (128 / 255 - 0.5) / 0.25, -2.0]))
    assert list((tmp_path / "cache" / "fewshot").iterdir())[0].name.startswith("folder-mine-")


def test_folder_datamodule_needs_two_classes(tmp_path: Path) -> None:
    root = fx.write_user_tree(tmp_path / "solo", ["only"], per_class=4, splits=("train", "test"))
    dm = FewShotDataModule(root=str(root), num_workers=0, cache_dir=str(tmp_path))
    with pytest.raises(ZooError, match="1 class; the base-to-new protocol needs at least 2"):
        dm.setup()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_shots": 0}, "--data.init_args.num_shots must be >= 1 (or -1 for all images), got 0"),
    ({"num_shots": -3}, "--data.init_args.num_shots must be >= 1 (or -1 for all images), got -3"),
    ({"image_size": 0}, "--data.init_args.image_size must be >= 1, got 0"),
    ({"batch_size": 0}, "--data.init_args.batch_size must be >= 1, got 0"),
    ({"eval_batch_size": -1}, "--data.init_args.eval_batch_size must be >= 1, got -1"),
    ({"num_workers": -1}, "--data.init_args.num_workers must be >= 0, got -1"),
    ({"crop_scale_min": 0.0}, "--data.init_args.crop_scale_min must be in (0, 1], got 0.0"),
    ({"crop_scale_min": 1.5}, "--data.init_args.crop_scale_min must be in (0, 1], got 1.5"),
    ({"mean": [0.5, 0.5]}, "--data.init_args.mean must be 3 values (R, G, B), got [0.5, 0.5]"),
    ({"std": [0.5, 0.0, 0.5]}, "--data.init_args.std must be 3 values > 0 (R, G, B), got [0.5, 0.0, 0.5]"),
    ({"train_classes": "new"}, "--data.init_args.train_classes must be 'base' or 'all', got 'new'"),
    ({"dataset": "dtd", "split_file": "x.json"}, "--data.init_args.split_file is for dataset='folder' only"),
])
def test_datamodule_arguments_checked_at_construction(tmp_path: Path, kwargs: dict, message: str) -> None:
    (tmp_path / "dtd").mkdir()
    with pytest.raises(ZooError) as e:
        FewShotDataModule(root=str(tmp_path), **kwargs)
    assert str(e.value).startswith(message)


def test_datamodule_missing_root_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match=re.escape(f"{tmp_path / 'nope'}: not found; expected your class-folder tree")):
        FewShotDataModule(root=str(tmp_path / "nope"))
    with pytest.raises(ZooError, match=re.escape(f"{tmp_path / 'dtd'}: not found; expected the dtd folder")):
        FewShotDataModule(root=str(tmp_path), dataset="dtd")
    with pytest.raises(ZooError, match="--data.init_args.root is required"):
        FewShotDataModule(root="")
