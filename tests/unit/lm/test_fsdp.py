"""The FSDP auto-wrap policy picks exactly the transformer blocks of each family."""

from __future__ import annotations

import pytest

from zoo.common.lm.fsdp import transformer_block_policy
from zoo.common.lm.tiny import tiny_config, tiny_model


@pytest.mark.parametrize("family,blocks", [("llama", {"LlamaDecoderLayer"}), ("gpt2", {"GPT2Block"}),
                                           ("t5", {"T5Block"}), ("bart", {"BartEncoderLayer", "BartDecoderLayer"})])
def test_policy_wraps_the_transformer_blocks_only(family, blocks):
    cfg = tiny_config(family, 20, hidden=16, layers=2, heads=2, intermediate=32, max_positions=32,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = tiny_model(cfg)
    wrapped = {type(m).__name__ for m in model.modules() if transformer_block_policy(m, False, 0)}
    assert wrapped == blocks
    assert transformer_block_policy(model, True, 0)  # always descend
