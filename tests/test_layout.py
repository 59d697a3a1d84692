"""The package's layering: lower layers never import upper ones."""

import ast
from pathlib import Path

import mamo_hf

PACKAGE = Path(mamo_hf.__file__).parent


def relative_imports(path: Path) -> set[str]:
    """Modules a file imports relatively, resolved to dotted names inside `mamo_hf`."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            found.add(".".join((*base, node.module or "")))
    return found


def test_data_never_imports_evaluation_or_training():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(name for name in relative_imports(path) if name.startswith(upper))
        for path in (PACKAGE / "data").glob("*.py")
        for upper in ("mamo_hf.evaluation", "mamo_hf.training")
        if any(name.startswith(upper) for name in relative_imports(path))
    }
    assert not offenders


def test_weight_conversion_lives_outside_the_modeling_file():
    source = (PACKAGE / "modeling_mamo.py").read_text()
    assert "def vit_to_mamo_state_dict" not in source and "def bert_to_mamo_state_dict" not in source
    assert "def vit_to_mamo_state_dict" in (PACKAGE / "conversion_mamo.py").read_text()
