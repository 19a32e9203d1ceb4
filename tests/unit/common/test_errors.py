"""One-line user errors, also when raised inside a DataLoader worker."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from zoo.core.errors import ZooError, one_line, run_cli


class _Bad(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        raise ZooError("data/x.jpg: cannot read image (truncated)")


def test_worker_error_is_reduced_to_its_message(capsys):
    def go():
        next(iter(DataLoader(_Bad(), num_workers=1)))

    assert run_cli(go) == 2
    assert capsys.readouterr().err == "error: data/x.jpg: cannot read image (truncated)\n"


def test_one_line_plain():
    assert one_line(ZooError("a: b")) == "a: b"
    assert run_cli(lambda: None) == 0
