"""The zoo's shared language-model layer, used by every LM paper and importing none of them.

- :mod:`~zoo.common.lm.loading`: local Hugging Face folders only (``local_files_only=True``);
  a missing file is a one-line :class:`~zoo.core.errors.ZooError` naming the folder and the file.
- :mod:`~zoo.common.lm.tiny`: tiny LLaMA / GPT-2 / BART / T5 models from a small config, a
  word-level or BPE tokenizer trained with ``tokenizers`` and saved as a
  ``PreTrainedTokenizerFast`` folder, and :func:`~zoo.common.lm.tiny.save_model`, so that tiny
  and real models go through the same loader.
- :mod:`~zoo.common.lm.text`: prompt/target encoding with label masks (-100 on the prompt), the
  prefix check, and a padding collate.
- :mod:`~zoo.common.lm.scoring`: token and sequence log-probabilities and the LM loss, in fp32.
- :mod:`~zoo.common.lm.generation`: greedy / beam generation through ``model.generate``.
- :mod:`~zoo.common.lm.lora`: LoRA through ``peft``, adapter-only state dicts and a fingerprint
  of the frozen base weights.
- :mod:`~zoo.common.lm.client`: black-box LLMs (teachers, judges) behind one protocol, with the
  ``openai`` client and a deterministic stand-in.
- :mod:`~zoo.common.lm.answers`: answer extraction (numeric, multiple choice, yes/no).

Import the submodules directly (``from zoo.common.lm.text import encode_pair``); this package
imports nothing heavy.
"""
