"""The README's findings are generated from the committed results: they cannot drift."""

from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


def test_readme_blocks_match_the_committed_results():
    gen = load_script(ROOT / "scripts" / "readme.py", "readme_script")
    readme = next(gen)
    text = (ROOT / "README.md").read_text()
    assert readme.BLOCK.search(text), "README.md has no generated block"
    assert readme.render(text) == text, "README.md drifted: run python scripts/readme.py"
    gen.close()


def test_every_reference_experiment_has_its_claims_in_the_readme():
    text = (ROOT / "README.md").read_text()
    for name in ("vanishing", "spectrum", "lstm", "clipping", "truncation", "lyapunov"):
        assert f"<!-- begin: claims {name} -->" in text
        assert "**does not hold**" not in text   # the mark scripts/readme.py gives a failing claim


def test_relative_links_in_the_docs_point_to_files():
    """Every relative link ``[text](path)`` of README.md and docs/*.md names a file or folder
    of the repository (anchors and web addresses are not checked)."""
    import re
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (doc.parent / target.split("#")[0]).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken
