"""The package's layering: lower layers never import upper ones."""

import ast
import re
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


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_imports_another_modules_private_name():
    """A name with a leading underscore is its module's own business: imported elsewhere, it is an API in hiding."""
    repository = PACKAGE.parent
    files = [*package_files(), *(repository / "examples").rglob("*.py"), *(repository / "benchmarks").rglob("*.py")]
    offenders = [
        f"{path.relative_to(repository)}: {alias.name}"
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not offenders


def test_the_code_cites_only_documents_of_the_repository_and_sections_that_exist():
    repository = PACKAGE.parent
    method = (repository / "docs" / "method.md").read_text()
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", method, flags=re.MULTILINE))
    texts = {
        path: path.read_text()
        for pattern in ("mamo_hf/**/*.py", "examples/**/*", "benchmarks/*.py", "*.md")
        for path in repository.glob(pattern)
        if path.is_file() and path.suffix in {".py", ".md", ".yaml"}
    }
    assert not [str(path) for path, text in texts.items() if "SPEC.md" in text]
    cited = {
        (str(path.relative_to(repository)), section)
        for path, text in texts.items()
        for group in re.findall(r"docs/method\.md ((?:§[\d.]+(?:[–-]§?[\d.]+)?(?:, )?)+)", text)
        for section in re.findall(r"(\d+(?:\.\d+)?)", group)
    }
    assert cited and not [(path, section) for path, section in cited if section not in sections]


def test_the_modules_a_checkpoint_carries_import_only_each_other():
    carried = {"configuration_mamo", "modeling_mamo", "losses_mamo", "conversion_mamo"}
    carried |= {"processing_mamo", "image_processing_mamo"}
    for name in carried:
        imported = {module.removeprefix("mamo_hf.") for module in relative_imports(PACKAGE / f"{name}.py")}
        assert imported <= carried, name


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_links_between_the_documents_point_to_headings_that_exist():
    repository = PACKAGE.parent
    documents = ["README.md", "MODEL_CARD.md", "BENCHMARKS.md", "docs/method.md"]
    broken = []
    for source in documents:
        folder = (repository / source).parent
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?#([\w-]+)\)", (repository / source).read_text()):
            path = (folder / target).resolve() if target else repository / source
            if anchor not in heading_anchors(path.read_text()):
                broken.append(f"{source} -> {target or source}#{anchor}")
    assert not broken
