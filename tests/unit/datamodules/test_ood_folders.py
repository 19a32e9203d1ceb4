"""A user's own OOD data (``OODFolders``: an ID class-folder tree + named OOD folders) and the
build-time argument checks of every OOD datamodule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from datamodules.ood.procedural import ClutterGlyphs
from datamodules.ood.real import ClassFolders, OODBenchmark, OODFolders
from tests.helpers import fixtures as fx
from zoo.core import registry
from zoo.core.errors import ZooError
from zoo.core.training import build_cli

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = str(ROOT / "configs" / "mode" / "folders.yaml")
CLASSES = ["zebra", "apple", "mango"]  # written in this order; labels follow the sorted names
MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 classes x (4 train, 2 test) PNGs (``mango`` partly nested), two OOD folders (one nested)."""
    base = tmp_path_factory.mktemp("own")
    root = fx.write_class_tree(base / "mine", CLASSES, {"train": 4, "test": 2}, nested=["mango"])
    (root / "train" / "apple" / "notes.txt").write_text("not an image")
    fx.write_corrupt_image(root / "train" / "apple" / "._apple_0.png")  # hidden: skipped
    textures = base / "dtd" / "images"
    fx.write_flat_folder(textures / "banded", 3, ext="jpg")
    fx.write_flat_folder(textures / "dotted" / "deeper", 2, ext="png")
    far = base / "far"
    fx.write_flat_folder(far, 4, ext="png", size=(50, 30))
    return {"root": root, "textures": textures, "far": far}


def _dm(tree: dict[str, Path], **kw) -> OODFolders:
    args = dict(ood={"textures": str(tree["textures"]), "far": str(tree["far"])}, batch_size=4, eval_batch_size=64,
                num_workers=0, image_size=24, resize=28, mean=MEAN, std=STD, val_fraction=0.25)
    return OODFolders(str(tree["root"]), **{**args, **kw})


def _expected_pixel(cls: str) -> torch.Tensor:
    """The normalised value of every pixel of a ``cls`` image (uniform colour, exact under resize/crop)."""
    rgb = torch.tensor(fx.class_color(CLASSES.index(cls)), dtype=torch.float32) / 255
    return (rgb - torch.tensor(MEAN)) / torch.tensor(STD)


# ------------------------------------------------------------------------------------ the tree


def test_class_folders_labels_nested_and_hidden(tree: dict[str, Path]) -> None:
    ds = ClassFolders(str(tree["root"] / "train"))
    assert ds.classes == ["apple", "mango", "zebra"]
    assert len(ds) == 12 and ds.targets == [0] * 4 + [1] * 4 + [2] * 4
    names = [Path(p).relative_to(tree["root"] / "train").as_posix() for p, _ in ds.samples]
    assert "mango/more/mango_1.png" in names and not any(n.startswith("apple/.") for n in names)
    item = ds[5]
    assert item["label"] == 1 and item["image"].size == (40, 28)
    assert item["image"].getpixel((3, 7)) == fx.class_color(CLASSES.index("mango"))


def test_folders_datamodule_loaders_labels_and_spec(tree: dict[str, Path]) -> None:
    dm = _dm(tree, n_views=2)
    dm.setup("fit")
    assert dm.class_names == ["apple", "mango", "zebra"] and dm.num_classes == 3
    assert dm.test_set_names == ["textures", "far"] and dm.average_names == ["textures", "far"]
    assert dm.val_set_names == []
    assert dm.eval_transform_spec() == {"resize": 28, "crop": 24, "mean": MEAN, "std": STD,
                                        "classes": ["apple", "mango", "zebra"]}
    # no val/: one of each class's 4 train images is held out (round(0.25 * 4)), never in train or bank
    train, val = dm._sets["train"], dm._sets["val"]
    assert len(train) == 9 and len(val) == 3 and sorted(val.targets) == [0, 1, 2]
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    b = next(iter(dm.train_dataloader()))
    assert set(b) == {"image", "image_view2", "label"} and b["image"].shape == (4, 3, 24, 24)
    test_id, textures, far = dm.test_dataloader()
    batch = next(iter(test_id))
    assert batch["image"].shape == (6, 3, 24, 24) and batch["label"].tolist() == [0, 0, 1, 1, 2, 2]
    for img, y in zip(batch["image"], batch["label"].tolist()):  # label <-> pixels, normalisation by hand
        want = _expected_pixel(dm.class_names[y])[:, None, None].expand(3, 24, 24)
        torch.testing.assert_close(img, want, rtol=0, atol=1e-6)
    t, f = next(iter(textures)), next(iter(far))
    assert t["image"].shape == (5, 3, 24, 24) and (t["label"] == -1).all()  # nested folder found
    assert f["image"].shape == (4, 3, 24, 24) and (f["label"] == -1).all()  # 50x30 -> 28 short side -> 24 crop
    assert len(next(iter(dm.bank_dataloader()))["label"]) == 9


def test_seeded_split_depends_on_names_and_seed_only(tree: dict[str, Path]) -> None:
    a, b, c = _dm(tree), _dm(tree), _dm(tree, val_seed=3)
    for d in (a, b, c):
        d.setup()
    held = [sorted(p for p, _ in d._sets["val"].samples) for d in (a, b, c)]
    assert held[0] == held[1] and held[0] != held[2]
    z = _dm(tree, val_fraction=0.0)  # no split: the threshold is fixed on ID test
    z.setup()
    assert z._sets["val"] is z._sets["test"] and len(z._sets["train"]) == 12


def test_val_folder_and_val_ood_are_used(tmp_path: Path, tree: dict[str, Path]) -> None:
    root = fx.write_class_tree(tmp_path / "t", CLASSES, {"train": 3, "test": 1, "val": 2})
    dm = OODFolders(str(root), ood={"far": str(tree["far"])}, val_ood={"far_val": str(tree["textures"])},
                    batch_size=2, num_workers=0, image_size=16)
    dm.setup()
    assert len(dm._sets["train"]) == 9 and len(dm._sets["val"]) == 6 and dm.val_set_names == ["far_val"]
    assert len(dm.val_dataloader()) == 2 and dm.eval_transform_spec()["resize"] == 16


def test_no_ood_sets_warns(tmp_path: Path) -> None:
    root = fx.write_class_tree(tmp_path / "t", CLASSES, {"train": 2, "test": 1})
    dm = OODFolders(str(root), batch_size=2, num_workers=0, val_fraction=0.0)
    with pytest.warns(UserWarning, match="ood is empty: the test stage reports ID accuracy only"):
        dm.setup()
    assert dm.test_set_names == [] and len(dm.test_dataloader()) == 1


def _error(tmp_path: Path, case: str, tree: dict[str, Path]) -> tuple[OODFolders, str]:
    root = fx.write_class_tree(tmp_path / "t", ["a", "b"], {"train": 2, "test": 1})
    ood = {"far": str(tree["far"])}
    if case == "root missing":
        return OODFolders(str(tmp_path / "nope"), ood=ood), rf"^--data\.init_args\.root .*nope: not found; expected"
    if case == "no train":
        (root / "x").mkdir()
        return OODFolders(str(root / "x"), ood=ood), r"root: .*x/train: not found; expected a class-folder split"
    if case == "no class folders":
        r2 = tmp_path / "flat"
        fx.write_flat_folder(r2 / "test" / "c", 1)
        (r2 / "train").mkdir()
        return OODFolders(str(r2), ood=ood), r"train: no class folders; expected"
    if case == "empty class":
        (root / "train" / "c" / "sub").mkdir(parents=True)
        return OODFolders(str(root), ood=ood), r"train/c: class folder without images"
    if case == "loose images":
        fx.write_image(root / "test" / "stray.jpg")
        return OODFolders(str(root), ood=ood), r"test: 1 image\(s\) directly in the split folder \(e\.g\. stray\.jpg\)"
    if case == "classes differ":
        fx.write_class_tree(root, ["c"], {"test": 1})
        return OODFolders(str(root), ood=ood), r"test/ and train/ hold different class folders \(only in train/: " \
                                               r"\[\], only in test/: \['c'\]\)"
    if case == "val classes differ":
        fx.write_class_tree(root, ["a"], {"val": 1})
        return OODFolders(str(root), ood=ood), r"val/ and train/ hold different class folders .*only in train/: \['b'\]"
    if case == "ood missing":
        return (OODFolders(str(root), ood={"t": str(tmp_path / "gone")}),
                r"^--data\.init_args\.ood: 't' -> .*gone: not found; expected a folder of images")
    if case == "ood empty":
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        return (OODFolders(str(root), ood={"t": str(tmp_path / "empty")}),
                r"empty: no images found .*expected OOD set 't' of --data\.init_args\.ood")
    if case == "val_ood missing":
        return (OODFolders(str(root), ood=ood, val_ood={"v": str(tmp_path / "gone")}),
                r"^--data\.init_args\.val_ood: 'v' -> .*gone: not found")
    raise AssertionError(case)


@pytest.mark.filterwarnings("ignore:.*holds out no image")
@pytest.mark.parametrize("case", ["root missing", "no train", "no class folders", "empty class", "loose images",
                                  "classes differ", "val classes differ", "ood missing", "ood empty",
                                  "val_ood missing"])
def test_tree_errors_are_one_line(tmp_path: Path, tree: dict[str, Path], case: str) -> None:
    dm, pattern = _error(tmp_path, case, tree)
    with pytest.raises(ZooError, match=pattern) as e:
        dm.setup()
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- the CLI recipe

_TINY = ["--model.backbone=test_resnet", "--model.alpa_dim=8", "--model.pretrain_epochs=1", "--model.k=3",
         "--model.vote_k=3", "--model.plots=false", "--trainer.max_epochs=2", "--trainer.logger=false",
         "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=64", "--data.init_args.num_workers=0"]


def _folder_args(tree: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    ood = '{"textures": "%s", "far": "%s"}' % (tree["textures"], tree["far"])
    return ["--config", FOLDERS, f"--data.init_args.root={tree['root']}", f"--data.init_args.ood={ood}",
            f"--run_dir={run_dir}", *_TINY, *extra]


def test_folders_config_trains_and_tests_per_ood_set(tree: dict[str, Path], tmp_path: Path) -> None:
    """The documented one-command form (with tiny overrides): fit 2 epochs (CE, then ALPA), test."""
    cli = build_cli(registry.get("mode"), _folder_args(tree, tmp_path / "run", "--model.num_classes=3",
                                                       "--data.init_args.val_fraction=0.25"))
    assert type(cli.datamodule) is OODFolders and cli.datamodule.hparams.hflip is True  # not the world's
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("e00") and "-acc" in n for n in ckpts)  # monitors val/acc
    assert cli.model.transform_spec["classes"] == ["apple", "mango", "zebra"]
    out = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    for key in ("test/acc", "test/auroc", "test/fpr95", "test/textures/auroc", "test/far/fpr95", "test/far/aupr_in"):
        assert key in out and 0.0 <= out[key] <= 1.0
    assert out["test/auroc"] == pytest.approx((out["test/textures/auroc"] + out["test/far/auroc"]) / 2, abs=1e-6)


def test_num_classes_mismatch_refused_before_training(tree: dict[str, Path], tmp_path: Path) -> None:
    cli = build_cli(registry.get("mode"), _folder_args(tree, tmp_path / "run", "--data.init_args.val_fraction=0.25"))
    with pytest.raises(ZooError, match=re.escape("--model.num_classes=10 but the data has 3 ID classes "
                                                 "(apple, mango, zebra); pass --model.num_classes=3")):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 0


def _zoo_error(exc: BaseException) -> ZooError | None:
    """The ZooError behind ``exc`` (jsonargparse wraps errors of a Union-typed ``--data`` in a ValueError)."""
    while exc is not None and not isinstance(exc, ZooError):
        exc = exc.__cause__ or exc.__context__
    return exc


def test_bad_data_argument_from_the_command_line(tree: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(Exception) as e:
        build_cli(registry.get("mode"), _folder_args(tree, tmp_path / "run", "--data.init_args.batch_size=0"))
    err = _zoo_error(e.value)
    assert err is not None and str(err) == "--data.init_args.batch_size must be >= 1, got 0"


# ---------------------------------------------------------------------------- argument checks

_ARG_CASES = [
    (OODFolders, {"batch_size": 0}, "--data.init_args.batch_size must be >= 1, got 0"),
    (OODFolders, {"eval_batch_size": -2}, "--data.init_args.eval_batch_size must be >= 1, got -2"),
    (OODFolders, {"num_workers": -1}, "--data.init_args.num_workers must be >= 0, got -1"),
    (OODFolders, {"batch_size": 2.5}, "--data.init_args.batch_size must be an integer >= 1, got 2.5"),
    (OODFolders, {"n_views": 3}, "--data.init_args.n_views must be 1 or 2, got 3"),
    (OODFolders, {"image_size": 0}, "--data.init_args.image_size must be >= 1, got 0"),
    (OODFolders, {"image_size": 32, "resize": 28}, "--data.init_args.resize must be >= --data.init_args.image_size=32"),
    (OODFolders, {"crop_scale_min": 0.0}, "--data.init_args.crop_scale_min must be in (0, 1], got 0.0"),
    (OODFolders, {"crop_scale_min": 1.5}, "--data.init_args.crop_scale_min must be in (0, 1], got 1.5"),
    (OODFolders, {"crop_ratio": [1.3, 0.7]}, "--data.init_args.crop_ratio must be [min, max] aspect ratios"),
    (OODFolders, {"mean": [0.5, 0.5]}, "--data.init_args.mean must be 3 numbers (R, G, B), got [0.5, 0.5]"),
    (OODFolders, {"std": [0.2, 0.0, 0.2]}, "--data.init_args.std must be 3 positive numbers (R, G, B)"),
    (OODFolders, {"augment": "strong"}, "--data.init_args.augment must be one of ['none', 'ce', 'contrastive']"),
    (OODFolders, {"val_fraction": 1.0}, "--data.init_args.val_fraction must be in [0, 1), got 1.0"),
    (OODFolders, {"ood": {"a/b": "x"}}, "--data.init_args.ood: OOD set name 'a/b'; expected letters"),
    (OODFolders, {"ood": ["x"]}, "--data.init_args.ood must map names to folders"),
    (OODFolders, {"ood": {"t": "x"}, "average": ["u"]}, "--data.init_args.average: unknown OOD set(s) to average"),
    (ClutterGlyphs, {"n_views": 0}, "--data.init_args.n_views must be 1 or 2, got 0"),
    (ClutterGlyphs, {"seed": -1}, "--data.init_args.seed must be >= 0, got -1"),
    (ClutterGlyphs, {"sizes": {"id_train": 0}}, "--data.init_args.sizes.id_train must be >= 1, got 0"),
    (ClutterGlyphs, {"sizes": {"id_trian": 8}}, "--data.init_args.sizes: unknown world split(s) ['id_trian']"),
    (ClutterGlyphs, {"test_sets": ["id_test"]}, "--data.init_args.test_sets: unknown OOD split(s) ['id_test']"),
    (ClutterGlyphs, {"average": ["ood_bg"], "test_sets": ["ood_near"]}, "--data.init_args.average: unknown OOD"),
    (ClutterGlyphs, {"world": {"nope": 1}}, "--data.init_args.world: "),
    (ClutterGlyphs, {"world": {"n_classes": 99}}, "--data.init_args.world: n_classes must be in 1..6, got 99"),
    (OODBenchmark, {"ood_sets": ["mnist"]}, "--data.init_args.ood_sets: unknown OOD set(s) ['mnist']"),
    (OODBenchmark, {"ood_sets": []}, "--data.init_args.ood_sets is empty"),
    (OODBenchmark, {"val_size": -1}, "--data.init_args.val_size must be >= 0, got -1"),
    (OODBenchmark, {"image_size": 0}, "--data.init_args.image_size must be >= 1, got 0"),
    (OODBenchmark, {"id_dataset": "mnist"}, "--data.init_args.id_dataset 'mnist': expected one of cifar10"),
]


@pytest.mark.parametrize("cls,kw,message", _ARG_CASES, ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in _ARG_CASES])
def test_arguments_checked_when_built(tmp_path: Path, cls, kw: dict, message: str) -> None:
    """Refused in ``__init__``: nothing is read, rendered or trained."""
    args = {"root": str(tmp_path / "never_read")} if cls is not ClutterGlyphs else {}
    with pytest.raises(ZooError) as e:
        cls(**args, **kw)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert not (tmp_path / "never_read").exists()


def test_batch_larger_than_train_set_refused_at_setup(tmp_path: Path, tree: dict[str, Path]) -> None:
    dm = _dm(tree, batch_size=10)  # 9 training images after the validation split
    with pytest.raises(ZooError, match=r"--data\.init_args\.batch_size=10 is larger than the 9 ID training images"):
        dm.setup()


def test_world_classes_follow_n_classes(world_cache: str) -> None:
    sizes = {n: 8 for n in ("id_train", "id_val", "id_test", "ood_near", "ood_far", "ood_bg", "ood_val_near",
                            "ood_val_far")}
    dm = ClutterGlyphs(sizes=sizes, batch_size=4, world={"n_classes": 3})
    dm.setup()
    assert dm.class_names == ["disk", "square", "triangle"] and dm.num_classes == 3
