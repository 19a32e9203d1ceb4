"""MCC-KD end to end on its tiny config: LoRA (adapters-only checkpoints, base fingerprint),
``zoo.predict --question``, and ``zoo.prepare mcc_kd`` (also with a teacher on a loopback stand-in)."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tests.helpers.fit import fit_tiny
from zoo.core.errors import ZooError

LORA = "--model.lora={targets: [q_proj, v_proj], r: 4, alpha: 4}"
Q = "Tom has 3 apples . Then Tom buys 2 more apples . How many apples does Tom have now ?"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, world_cache):
    d = tmp_path_factory.mktemp("mcc_lora")
    cli = fit_tiny("mcc_kd", d / "run", LORA, "--trainer.max_epochs=1")
    path = d / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    return cli, path


def test_lora_trains_only_adapters_and_the_checkpoint_holds_only_them(lora_run):
    cli, path = lora_run
    lm = cli.model.net.lm
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    assert len(ckpt["zoo"]["base_fingerprint"]) == 64
    # the adapters trained: some lora_B left zero init
    assert any(v.abs().sum() > 0 for k, v in ckpt["state_dict"].items() if "lora_B" in k)


def test_lora_reload_gives_identical_generations_and_checks_the_base(lora_run):
    cli, path = lora_run
    model = cli.model.eval()
    loaded = zoo.load(path)
    assert loaded.answer_rows([Q]) == model.answer_rows([Q])
    with pytest.raises(ZooError, match="differs from the one the LoRA adapters were trained on"):
        zoo.load(path, seed=123)  # another tiny base init: another fingerprint


def test_merged_and_unmerged_adapters_give_equal_logits(lora_run):
    from zoo.common.lm.lora import merged_copy

    cli, _ = lora_run
    lm = cli.model.net.lm.eval()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        a = lm(input_ids=ids).logits
        b = merged_copy(lm)(input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_predict_question_prints_rationale_and_answer(lora_run, capsys):
    from zoo.predict import main

    _, path = lora_run
    assert main([str(path), "--question", Q, "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["input"] == Q and set(row) == {"input", "answer", "rationale"}
    assert main([str(path)]) == 2  # no question at all: one-line error


def _raw(tmp_path):
    from datamodules.reasoning.records import write_jsonl

    recs = [{"id": "q1", "question": "Ann has 2 pens . How many pens ?", "answer": "5", "kind": "number",
             "rationales": ["2 + 3 = 5 . Therefore , the answer is 5 .", "2 + 3 = 6 . Therefore , the answer is 6 .",
                            "Ann had 2 and got 3 , so 5 . Therefore , the answer is 5 ."]},
            {"id": "q2", "question": "Bo has 4 cups . How many cups ?", "answer": "4", "kind": "number",
             "rationales": ["4 . Therefore , the answer is 4 .", "4 . Therefore , the answer is 4 ."]}]
    path = tmp_path / "raw.jsonl"
    write_jsonl(path, recs)
    return path


def test_prepare_filters_and_routes_and_refuses_to_overwrite(tmp_path, capsys):
    from datamodules.reasoning.records import read_jsonl
    from zoo.prepare import main

    raw, out, base = _raw(tmp_path), tmp_path / "mcc.jsonl", tmp_path / "base.jsonl"
    args = ["mcc_kd", "--input", str(raw), "--output", str(out), "--baseline-output", str(base)]
    assert main(args) == 0
    mcc = read_jsonl(out)
    assert [r["id"] for r in mcc] == ["q1"] and len(mcc[0]["rationales"]) == 2  # the slip is dropped
    assert [r["id"] for r in read_jsonl(base)] == ["q2"]  # duplicates leave one: baseline only
    before = out.read_bytes()
    assert main(args) == 2 and out.read_bytes() == before
    assert "exists" in capsys.readouterr().err


def test_prepare_with_a_teacher_on_a_loopback_stand_in(tmp_path, monkeypatch):
    from datamodules.reasoning.records import read_jsonl, write_jsonl
    from zoo.common.lm.client import serve_standin
    from zoo.prepare import main

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TEACHER_KEY", "sk-test-secret")
    qs = tmp_path / "qs.jsonl"
    write_jsonl(qs, [{"id": "a", "question": "What is 2 + 3 ?", "answer": "5", "rationales": [], "kind": "number"}])
    replies = ["2 + 3 = 5 .\nTherefore, the answer is 5.", "Two and three make 5.\nTherefore, the answer is 5.",
               "2 + 3 = 6 .\nTherefore, the answer is 6."]
    with serve_standin(lambda msgs, i: replies[i % 3]) as url:
        rc = main(["mcc_kd", "--input", str(qs), "--output", str(tmp_path / "o.jsonl"),
                   "--baseline-output", str(tmp_path / "b.jsonl"), "--teacher-base-url", url,
                   "--teacher-key-env", "TEACHER_KEY", "--teacher-samples", "3"])
        assert rc == 0 and len(url.requests) == 1
        body = url.requests[0]["body"]
        assert body["n"] == 3 and "What is 2 + 3 ?" in body["messages"][0]["content"]
    assert len(read_jsonl(tmp_path / "o.jsonl.raw.jsonl")[0]["rationales"]) == 3
    assert len(read_jsonl(tmp_path / "o.jsonl")[0]["rationales"]) == 2
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert "sk-test-secret" not in f.read_text()


def test_prepare_with_an_unreachable_teacher_fails_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import socket

    from datamodules.reasoning.records import write_jsonl
    from zoo.prepare import main

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    qs = tmp_path / "qs.jsonl"
    write_jsonl(qs, [{"id": "a", "question": "What is 2 + 3 ?", "answer": "5", "rationales": [], "kind": "number"}])
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TEACHER_KEY", "sk-test-secret")
    rc = main(["mcc_kd", "--input", str(qs), "--output", str(tmp_path / "o.jsonl"), "--baseline-output",
               str(tmp_path / "b.jsonl"), "--teacher-base-url", f"http://127.0.0.1:{port}/v1", "--teacher-key-env",
               "TEACHER_KEY", "--teacher-retries", "2", "--teacher-timeout", "1"])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (after the progress bar)
    assert rc == 2 and last.startswith("error: ") and "unreachable after 2 attempts" in last
    assert "sk-test-secret" not in last
    assert not list(tmp_path.glob("o.jsonl*")) and not (tmp_path / "b.jsonl").exists()


def test_seq2seq_student_trains_reloads_and_locates_spans_in_decoder_coordinates(tmp_path, world_cache):
    cli = fit_tiny("mcc_kd", tmp_path / "run", "--model.tiny={family: t5, hidden: 32, layers: 2, heads: 2, "
                   "intermediate: 64}", "--data.init_args.lm_kind=seq2seq", "--trainer.max_epochs=1")
    model, dm = cli.model.eval(), cli.datamodule
    assert model.lm_kind == "seq2seq"
    batch = next(iter(dm.train_dataloader()))
    b = batch["span_a"].shape[0]
    # decoder inputs are the labels shifted right behind the start token
    inside = batch["labels"][:, 1:] != -100
    assert torch.equal(batch["decoder_input_ids"][:, 1:][inside], batch["labels"][:, :-1][inside])
    for i in range(b):
        span = batch["labels"][i][batch["span_a"][i][batch["span_mask"][i]]]
        assert dm.tokenizer.decode(span.tolist()).endswith(".")
    path = tmp_path / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    assert zoo.load(path).answer_rows([Q]) == model.answer_rows([Q])


def test_student_kind_must_match_the_datamodule(tmp_path, world_cache):
    with pytest.raises(ZooError, match="lm_kind"):
        fit_tiny("mcc_kd", tmp_path / "run", "--model.tiny={family: t5, hidden: 32, layers: 2, heads: 2, "
                 "intermediate: 64}", "--trainer.max_epochs=1")


def test_a_local_model_folder_student_with_lora_checks_its_base_on_reload(tmp_path, world_cache):
    """The real-model path: ``--model.model_dir`` (a local HF folder, here a saved tiny LLaMA) with
    LoRA; the checkpoint keeps only adapters, and a changed base folder is refused on load."""
    from safetensors.torch import load_file, save_file

    from datamodules.reasoning.procedural import ArithWorld
    from zoo.common.lm.tiny import save_model, tiny_config, tiny_model
    from zoo.common.lm.loading import load_tokenizer

    dm = ArithWorld(world={"n_train": 40, "n_dev": 8, "n_test": 8, "n_ood_steps": 8, "n_ood_numbers": 8})
    dm.prepare_files()
    tok = load_tokenizer(dm.tokenizer_dir)
    cfg = tiny_config("llama", len(tok), hidden=32, layers=2, heads=2, intermediate=64, max_positions=320,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    folder = save_model(tiny_model(cfg, seed=5), dm.tokenizer_dir, tmp_path / "student")
    cli = fit_tiny("mcc_kd", tmp_path / "run", f"--model.model_dir={folder}", f"--data.init_args.tokenizer={folder}",
                   LORA, "--trainer.max_epochs=1")
    path = tmp_path / "m.ckpt"
    cli.trainer.save_checkpoint(path)
    assert zoo.load(path).answer_rows([Q]) == cli.model.eval().answer_rows([Q])
    weights = load_file(str(folder / "model.safetensors"))
    key = next(k for k in weights if k.endswith("q_proj.weight"))
    weights[key] = weights[key] + 0.01
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ZooError, match="differs from the one the LoRA adapters were trained on"):
        zoo.load(path)


def test_lightning_vs_bare_throughput_runs_the_same_step(world_cache):
    from tests.helpers.fit import tiny_config
    from zoo.mcc_kd.throughput import lightning_vs_bare

    r = lightning_vs_bare(tiny_config("mcc_kd"), steps=2, device="cpu", warmup=1)
    assert r["bare_tokens_per_s"] > 0 and r["lightning_tokens_per_s"] > 0 and r["precision"] == "32-true"
    assert r["ratio"] == pytest.approx(r["lightning_tokens_per_s"] / r["bare_tokens_per_s"])
