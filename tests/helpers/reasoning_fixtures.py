"""Tiny reasoning-benchmark files in their distributed formats (made-up problems, real layouts).

Each writer takes a folder and returns the file it wrote, so tests can point the loaders of
:mod:`datamodules.reasoning.real` at them.

- ``write_gsm8k(root, name)`` -> ``root/<name>`` (``train.jsonl``/``test.jsonl``): solutions with
  ``<<a*b=c>>`` calculator tags and a final ``#### 1,234`` line (one answer has a comma).
- ``write_svamp(root)`` -> ``root/SVAMP.json``: float answers (``18.0``, ``2.5``).
- ``write_asdiv(root)`` -> ``root/ASDiv.xml``: four problems, one with a non-numeric answer (``3:4``).
- ``write_csqa(root, name, labelled)`` -> ``root/<name>``: five choices per question; with
  ``labelled=False`` the lines have no ``answerKey`` (like the public test file).
- ``write_strategyqa(root)`` -> ``root/strategyqa_train.json``: boolean answers.
- ``write_mcckd_repo(root, name)`` -> ``root/<name>``: the official repo's JSON list with a string
  ``output``, a list ``output`` and stored ``indices``.
"""

from __future__ import annotations

import json
from pathlib import Path

GSM8K_ROWS = [
    {
        "question": "Maya bakes 12 muffins each day for 3 days. She sells 20 of them. How many muffins are left?",
        "answer": "Maya bakes 12*3 = <<12*3=36>>36 muffins.\nShe has 36-20 = <<36-20=16>>16 muffins left.\n#### 16",
    },
    {
        "question": "A shop sells 617 pens on Monday and twice as many on Tuesday. How many pens does it sell in both days?",
        "answer": "On Tuesday it sells 617*2 = <<617*2=1234>>1234 pens.\n"
                  "It sells 617+1234 = <<617+1234=1851>>1,851 pens in both days.\n#### 1,851",
    },
    {
        "question": "Leo has $5.50 and spends $2.25. How much money does he have now?",
        "answer": "He has 5.50-2.25 = <<5.50-2.25=3.25>>3.25 dollars now.\n#### 3.25",
    },
]

SVAMP_ROWS = [
    {"ID": "chal-1", "Body": "Jack had 8 pens and Mary had 5 pens. Jack gave 3 pens to Mary.",
     "Question": "How many pens does Jack have now?", "Equation": "( 8.0 - 3.0 )", "Answer": 5.0,
     "Type": "Subtraction"},
    {"ID": "chal-2", "Body": "A baker made 12 cakes. He sold 6 cakes and then made 12 more.",
     "Question": "How many cakes does he have?", "Equation": "( ( 12.0 - 6.0 ) + 12.0 )", "Answer": 18.0,
     "Type": "Addition"},
    {"ID": "chal-3", "Body": "5 friends share 12.5 liters of juice equally.",
     "Question": "How many liters does each friend get?", "Equation": "( 12.5 / 5.0 )", "Answer": 2.5,
     "Type": "Common-Division"},
    {"ID": "chal-4", "Body": "There are 7 red balls and 9 blue balls.", "Question": "How many balls are there?",
     "Equation": "( 7.0 + 9.0 )", "Answer": 16.0, "Type": "Addition"},
]

ASDIV_XML = """<?xml version="1.0" encoding="utf-8"?>
<Machine-Reading-Corpus-File>
  <ProblemSet>
    <Problem ID="nluds-0001" Grade="1" Source="http://example.org/a">
      <Body>Seven red apples and two green apples are in the basket.</Body>
      <Question>How many apples are in the basket?</Question>
      <Solution-Type>Addition</Solution-Type>
      <Answer>9 (apples)</Answer>
      <Formula>7+2=9</Formula>
    </Problem>
    <Problem ID="nluds-0002" Grade="2" Source="http://example.org/b">
      <Body>Ellen has 6 more balls than Marin. Marin has 9 balls.</Body>
      <Question>How many balls does Ellen have?</Question>
      <Solution-Type>Addition</Solution-Type>
      <Answer>15 (balls)</Answer>
      <Formula>6+9=15</Formula>
    </Problem>
    <Problem ID="nluds-0003" Grade="4" Source="http://example.org/c">
      <Body>There are 3 boys and 4 girls in a group.</Body>
      <Question>What is the ratio of boys to girls?</Question>
      <Solution-Type>Ratio</Solution-Type>
      <Answer>3:4 (ratio)</Answer>
      <Formula>3:4</Formula>
    </Problem>
    <Problem ID="nluds-0004" Grade="3" Source="http://example.org/d">
      <Body>A rope is 10 meters long. It is cut into 4 equal pieces.</Body>
      <Question>How long is each piece?</Question>
      <Solution-Type>Common-Division</Solution-Type>
      <Answer>2.5 (meters)</Answer>
      <Formula>10/4=2.5</Formula>
    </Problem>
  </ProblemSet>
</Machine-Reading-Corpus-File>
"""

CSQA_ROWS = [
    {"id": "q-0001", "answerKey": "B",
     "question": {"question_concept": "pen", "stem": "Where would you keep a pen you use every day?",
                  "choices": [{"label": "A", "text": "zoo"}, {"label": "B", "text": "desk drawer"},
                              {"label": "C", "text": "ocean"}, {"label": "D", "text": "cloud"},
                              {"label": "E", "text": "volcano"}]}},
    {"id": "q-0002", "answerKey": "E",
     "question": {"question_concept": "rain", "stem": "What do people open when it starts to rain?",
                  "choices": [{"label": "A", "text": "window"}, {"label": "B", "text": "oven"},
                              {"label": "C", "text": "book"}, {"label": "D", "text": "door"},
                              {"label": "E", "text": "umbrella"}]}},
]

STRATEGYQA_ROWS = [
    {"qid": "abc123", "term": "Penguin", "description": "A flightless bird",
     "question": "Could a penguin fly across the ocean?", "answer": False,
     "facts": ["Penguins cannot fly."], "decomposition": ["Can penguins fly?"], "evidence": [[[["no_evidence"]]]]},
    {"qid": "def456", "term": "Ice", "description": "Frozen water", "question": "Does ice float on water?",
     "answer": True, "facts": ["Ice is less dense than water."], "decomposition": ["Is ice less dense than water?"],
     "evidence": [[[["no_evidence"]]]]},
]

MCCKD_ROWS = [
    {"instruction": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "output": "Tom has 3 + 4 = 7 apples. Therefore, the answer is 7 .", "label": "7", "indices": [[12, 14]]},
    {"instruction": "A box holds 1,000 nails. 250 are used. How many are left?",
     "output": ["1000 - 250 = 750 nails are left. Therefore, the answer is 750 .",
                "There are 1,000 - 250 = 750 left. Therefore, the answer is 750 ."],
     "label": "750.0", "indices": [[9, 11], [10, 12]]},
    {"instruction": "Where do fish live? Answer Choices:\nA. desert\nB. water\nC. sky\nD. tree\nE. road\n",
     "output": ["Fish need water to breathe. Therefore, the answer is B ."], "label": "B"},
]


def write_gsm8k(root: str | Path, name: str = "train.jsonl") -> Path:
    """GSM8K JSONL lines ``{"question", "answer"}``."""
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in GSM8K_ROWS), encoding="utf-8")
    return path


def write_svamp(root: str | Path) -> Path:
    """``SVAMP.json``: a JSON list with float answers."""
    path = Path(root) / "SVAMP.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(SVAMP_ROWS, indent=4), encoding="utf-8")
    return path


def write_asdiv(root: str | Path) -> Path:
    """``ASDiv.xml`` with four problems, one of them non-numeric (``3:4 (ratio)``)."""
    path = Path(root) / "ASDiv.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ASDIV_XML, encoding="utf-8")
    return path


def write_csqa(root: str | Path, name: str = "train_rand_split.jsonl", labelled: bool = True) -> Path:
    """CommonsenseQA JSONL lines; ``labelled=False`` drops ``answerKey`` (the public test file)."""
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r if labelled else {k: v for k, v in r.items() if k != "answerKey"} for r in CSQA_ROWS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_strategyqa(root: str | Path) -> Path:
    """``strategyqa_train.json``: a JSON list with boolean answers."""
    path = Path(root) / "strategyqa_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(STRATEGYQA_ROWS, indent=2), encoding="utf-8")
    return path


def write_mcckd_repo(root: str | Path, name: str = "train.json") -> Path:
    """The official repo's JSON list (string and list ``output``, stored ``indices``)."""
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(MCCKD_ROWS, indent=2), encoding="utf-8")
    return path
