"""README's Python-API snippet runs as printed (it is read from README.md, not copied here)."""

import re

from tests.conftest import REPO


def test_readme_api_snippet_runs(capsys):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- readme-api -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no Python block after <!-- readme-api -->"
    code = m.group(1)
    for name in ("diffro_loss", "straight_through", "RewardTerm"):
        assert name in code
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # its own asserts check the result
    out = capsys.readouterr().out.splitlines()
    assert "policy/kl" in out[0] or "reward/emotion" in out[0]
    assert out[1].startswith("tensor([")
