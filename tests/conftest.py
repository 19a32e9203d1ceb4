"""Test settings: offline, W&B disabled, no sockets, 2 threads, tiny worlds cached per session."""

from __future__ import annotations

import os
import socket

os.environ["WANDB_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


class _NoNetwork(socket.socket):
    def connect(self, address):  # noqa: D401
        if isinstance(address, tuple) and address and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"tests must not use the network (tried {address})")
        return super().connect(address)


socket.socket = _NoNetwork  # any download attempt errors out


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory) -> str:
    """A per-session cache folder for procedural worlds (shared by all tests)."""
    path = tmp_path_factory.mktemp("zoo_cache")
    os.environ["ZOO_CACHE"] = str(path)
    return str(path)
