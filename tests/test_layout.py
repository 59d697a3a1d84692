"""The package's layering (lower layers never import upper ones), its documents' references, and tests that mirror
the package."""

import ast
import re
from pathlib import Path

import mamo_hf

PACKAGE = Path(mamo_hf.__file__).parent
REPOSITORY = PACKAGE.parent


def relative_imports(path: Path) -> set[str]:
    """Modules a file imports relatively, resolved to dotted names inside `mamo_hf`."""
    return {name for name in imported_modules(path) if name.startswith("mamo_hf")}


def module_name(path: Path) -> str:
    """The dotted name of a repository file: `mamo_hf/training/loop.py` → `mamo_hf.training.loop`."""
    parts = path.relative_to(REPOSITORY).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relatively or absolutely, as dotted names; `from package import module` counts
    the submodule when the package has a file of that name."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            submodules = {f"{module}.{alias.name}" for alias in node.names if is_module(f"{module}.{alias.name}")}
            found |= submodules if len(submodules) == len(node.names) else {module, *submodules}
    return found


def is_module(name: str) -> bool:
    """Whether the dotted `name` is a module or package of the repository."""
    candidate = REPOSITORY.joinpath(*name.split("."))
    return candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file()


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
    repository = REPOSITORY
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


def test_the_code_cites_only_documents_of_the_repository_and_sections_that_exist_by_their_titles():
    """A citation of the method document names its section by number and title (`docs/method.md §5 "Downstream
    tasks"`, or `§2 "Joint masking", §3 "Objectives"`): the title must begin the heading of that number, so that a
    citation of the wrong section shows."""
    method = (REPOSITORY / "docs" / "method.md").read_text()
    headings = dict(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? (.+)$", method, flags=re.MULTILINE))
    texts = {
        path: path.read_text()
        for pattern in ("mamo_hf/**/*.py", "examples/**/*", "benchmarks/*.py", "*.md")
        for path in REPOSITORY.glob(pattern)
        if path.is_file() and path.suffix in {".py", ".md", ".yaml"}
    }
    assert not [str(path) for path, text in texts.items() if "SPEC.md" in text]
    cited, untitled = [], []
    for path, text in texts.items():
        for group in re.findall(r'docs/method\.md\s+(§[\d.]+(?:\s+"[^"]+")?(?:, §[\d.]+(?:\s+"[^"]+")?)*)', text):
            for number, title in re.findall(r'§([\d.]*\d)(?:\s+"([^"]+)")?', group):
                title = " ".join(title.replace("#", " ").split())  # a title may go on in the next comment line
                (cited if title else untitled).append((str(path.relative_to(REPOSITORY)), number, title))
    assert cited and not untitled, untitled
    wrong = [(path, number, title) for path, number, title in cited if not headings.get(number, "").startswith(title)]
    assert not wrong


def test_no_module_of_the_package_imports_the_entry_script():
    """`mamo_hf_cli` hands its parsers to `mamo_hf.cli`; the package never imports it back."""
    offenders = [str(path) for path in package_files() if "mamo_hf_cli" in imported_modules(path)]
    assert not offenders


def test_no_import_circle_among_the_repository_modules():
    """The explicit imports among the package's modules and the entry script form no circle."""
    files = [*package_files(), REPOSITORY / "mamo_hf_cli.py"]
    modules = {module_name(path): path for path in files}
    graph = {name: sorted(imported_modules(path) & set(modules) - {name}) for name, path in modules.items()}
    assert not find_circle(graph)


def find_circle(graph: dict[str, list[str]]) -> list[str]:
    """A circle of `graph` (module → the modules it imports) as the list of its modules, or [] (depth-first)."""
    state, path = {}, []

    def visit(node):
        state[node], path[len(path) :] = "open", [node]
        for target in graph[node]:
            if state.get(target) == "open":
                return path[path.index(target) :]
            if target not in state and (circle := visit(target)):
                return circle
        state[node] = "done"
        path.pop()
        return []

    for node in graph:
        if node not in state and (circle := visit(node)):
            return circle
    return []


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


# ----------------------------------------------------------------------------------------------------------------
# The tests mirror the package
# ----------------------------------------------------------------------------------------------------------------

TESTS = REPOSITORY / "tests"
MIRRORED = ("training", "cli", "data")
# Modules of MIRRORED without a test file of their own, and why.
WITHOUT_TEST_FILE = {
    "mamo_hf/cli/options.py": "one argparse type, `at_least`, which every command's range errors go through",
}
# Test files of MIRRORED folders that mirror no single module, and what they test.
NOT_A_MODULE = {
    "tests/training/test_distributed.py": "two ranks against one process: the loop, the data and the checkpoints",
    "tests/data/test_negatives_realistic.py": "`mamo_hf.data.negatives` on the audit set of realistic captions",
}


def mirrored_modules(subpackage: str) -> list[Path]:
    """The modules (files and packages) of `mamo_hf/<subpackage>`, `__init__.py` aside."""
    folder = PACKAGE / subpackage
    return sorted(
        path
        for path in folder.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()
    )


def test_every_module_of_training_cli_and_data_has_its_tests_at_the_mirrored_path():
    """`mamo_hf/<subpackage>/<module>.py` (or the package `<module>/`) has its tests in
    `tests/<subpackage>/test_<module>.py`, and every test file there names a module that exists."""
    missing, orphans = [], []
    for subpackage in MIRRORED:
        modules = mirrored_modules(subpackage)
        for module in modules:
            test_file = TESTS / subpackage / f"test_{module.stem}.py"
            if str(module.relative_to(REPOSITORY)) not in WITHOUT_TEST_FILE and not test_file.is_file():
                missing.append(f"{module.relative_to(REPOSITORY)} -> {test_file.relative_to(REPOSITORY)}")
        names = {module.stem for module in modules}
        for test_file in sorted((TESTS / subpackage).glob("test_*.py")):
            if test_file.stem.removeprefix("test_") not in names:
                if str(test_file.relative_to(REPOSITORY)) not in NOT_A_MODULE:
                    orphans.append(str(test_file.relative_to(REPOSITORY)))
    assert not missing, missing
    assert not orphans, orphans
    for module in WITHOUT_TEST_FILE:
        assert (REPOSITORY / module).is_file(), f"{module} is gone: drop its exemption"


def test_no_test_file_imports_another():
    """What several test files share lives in `tests/helpers.py`, not in a test file that others import."""
    offenders = {
        str(path.relative_to(REPOSITORY)): sorted(name for name in imported_modules(path) if name.startswith("test_"))
        for path in sorted(TESTS.rglob("*.py"))
        if any(name.startswith("test_") for name in imported_modules(path))
    }
    assert not offenders
