"""The code of the README's "Use" section runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _use_section_code() -> str:
    text = README.read_text()
    section = text.split("\n## Use\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2
    return "\n".join(blocks)


def test_the_use_section_runs() -> None:
    scope: dict = {}
    exec(compile(_use_section_code(), "README.md (Use)", "exec"), scope)  # noqa: S102
    assert scope["scores"].shape == (1, 2, 64, 64)
    assert type(scope["dense_torch"]).__name__ == "Sequential"
    assert scope["classifier"].state_dict().keys() == scope["torch_model"].state_dict().keys()
