"""The real-setting builders: a local BERT split into text + fusion layers (BERT names kept, the
new cross-attention the only unloaded part) and timm ViT weights loaded strictly."""

from __future__ import annotations

import pytest
import torch

from zoo.core.errors import ZooError


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel

    from zoo.common.lm.tiny import word_tokenizer

    d = tmp_path_factory.mktemp("bert")
    tok = word_tokenizer(["a", "red", "circle", "dog"], max_length=12)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                     intermediate_size=64, max_position_embeddings=16, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _model(bert_dir, **kw):
    from zoo.pta.lightning_model import PTA

    return PTA(image_size=32, patch=16, vit_name="vit_tiny_patch16_224", bert_dir=str(bert_dir),
               text={"layers": 2, "fusion_layers": 2}, tpd_after=6, max_len=12, **kw)


def test_bert_layers_become_text_and_fusion_layers(bert_dir):
    from transformers import BertModel

    ref = BertModel.from_pretrained(str(bert_dir), local_files_only=True, add_pooling_layer=False)
    m = _model(bert_dir)
    assert len(m.net.text.encoder.layer) == 2 and len(m.net.fusion) == 2
    for i, layer in enumerate(m.net.fusion):
        src = ref.encoder.layer[2 + i].state_dict()
        own = layer.state_dict()
        assert {k for k in own if k not in src} == {k for k in own if k.startswith("crossattention.")}
        for k, v in src.items():
            assert torch.equal(own[k], v), k
    ids = m.tokenize(["a red dog"])
    out = m.net.encode_text(*ids)
    ref.encoder.layer = ref.encoder.layer[:2]
    torch.testing.assert_close(out, ref(input_ids=ids[0], attention_mask=ids[1]).last_hidden_state)


def test_vit_weights_load_strictly_and_a_stray_key_is_named(bert_dir, tmp_path):
    import timm

    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32)
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)  # with its classifier head: dropped on load
    m = _model(bert_dir, vit_weights=str(path))
    torch.testing.assert_close(m.net.vit.patch_embed.proj.weight, src.patch_embed.proj.weight, rtol=0, atol=0)
    bad = dict(src.state_dict(), extra_thing=torch.zeros(1))
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ZooError, match="extra_thing"):
        _model(bert_dir, vit_weights=str(tmp_path / "bad.pth"))


def test_weights_at_another_resolution_get_resampled_position_embeddings(bert_dir, tmp_path):
    import timm

    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64)
    torch.save(src.state_dict(), tmp_path / "vit64.pth")
    m = _model(bert_dir, vit_weights=str(tmp_path / "vit64.pth"))
    assert m.net.vit.pos_embed.shape == (1, 5, 192)


def test_too_many_layers_for_the_bert_is_an_error(bert_dir):
    from zoo.pta.lightning_model import PTA

    with pytest.raises(ZooError, match="exceed"):
        PTA(image_size=32, patch=16, vit_name="vit_tiny_patch16_224", bert_dir=str(bert_dir),
            text={"layers": 3, "fusion_layers": 2}, tpd_after=6)
