"""Make transformers' own common test suites importable, offline after the first run.

The mixins (`ModelTesterMixin`, `ConfigTester`, `ProcessorTesterMixin`, `ImageProcessingTestMixin`) live in
transformers' `tests/` folder, which the wheel does not ship but the sdist of the same version does. On first use
we `pip download` that sdist into the git-ignored folder `.transformers-tests/<version>/` and unpack its top-level
`tests/*.py` as the package `hf_common_tests`, next to small stand-ins for the helper modules that the sdist lacks:

- `hf_common_tests.generation.test_utils` and `hf_common_tests.exporters.test_export`: the generation and export
  mixins, which do not apply to MAMO (no `generate`, no export tests), as empty classes;
- `hf_common_tests.utils.test_configuration_utils`: `config_common_kwargs`, base-config fields with non-default
  values that the config tester sets and reads back;
- `utils/fetch_hub_objects_for_ci.py`: `url_to_local_path`, which maps the suites' fixture image URLs to images
  generated locally (this machine cannot reach the Hub).

Set `MAMO_TRANSFORMERS_SDIST` to a downloaded `transformers-<version>.tar.gz` to skip the download.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

import transformers

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITES_ROOT = REPO_ROOT / ".transformers-tests" / transformers.__version__
PACKAGE = "hf_common_tests"

STAND_INS = {
    "generation/test_utils.py": '''
        """Stand-in: MAMO has no `generate`, so the generation mixin contributes no tests."""


        class GenerationTesterMixin:
            pass
    ''',
    "exporters/test_export.py": '''
        """Stand-in: the export tests (torch.export / ONNX) are not part of this project's suite."""


        class ExportTesterMixin:
            pass
    ''',
    "utils/test_configuration_utils.py": '''
        """Stand-in: base `PreTrainedConfig` fields set to non-default values, read back by `ConfigTester`."""

        config_common_kwargs = {
            "return_dict": False,
            "output_hidden_states": True,
            "chunk_size_feed_forward": 5,
            "dtype": "float16",
            "architectures": ["MamoModel"],
            "id2label": {0: "label"},
            "label2id": {"label": "0"},
            "problem_type": "regression",
        }
    ''',
}

FETCH_HUB_OBJECTS = '''
    """Stand-in for transformers' CI helper: fixture URLs → images generated on this machine."""

    import hashlib
    import os

    import numpy as np
    from PIL import Image

    FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


    def url_to_local_path(url, return_url_if_not_found=True):
        name = os.path.basename(url)
        path = os.path.join(FIXTURES, name)
        if name.lower().endswith((".png", ".jpg", ".jpeg")) and not os.path.exists(path):
            os.makedirs(FIXTURES, exist_ok=True)
            seed = int(hashlib.sha256(url.encode()).hexdigest()[:8], 16)
            pixels = np.random.default_rng(seed).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
        return path
'''


def _download_sdist(destination: Path) -> Path:
    if os.environ.get("MAMO_TRANSFORMERS_SDIST"):
        return Path(os.environ["MAMO_TRANSFORMERS_SDIST"])
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"transformers=={transformers.__version__}",
        "--dest",
        str(destination),
    ]
    subprocess.run(command, check=True)
    return next(destination.glob("transformers-*.tar.gz"))


def _unpack_suites(sdist: Path, package_dir: Path) -> None:
    package_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py"):
                member.name = parts[2]
                archive.extract(member, package_dir, filter="data")
    (package_dir / "__init__.py").write_text("")
    for relative, source in STAND_INS.items():
        path = package_dir / relative
        path.parent.mkdir(exist_ok=True)
        (path.parent / "__init__.py").write_text("")
        path.write_text(textwrap.dedent(source).lstrip())
    helpers = package_dir.parent / "utils"
    helpers.mkdir(exist_ok=True)
    (helpers / "fetch_hub_objects_for_ci.py").write_text(textwrap.dedent(FETCH_HUB_OBJECTS).lstrip())


def install() -> None:
    """Fetch and unpack the suites once, then put them on `sys.path` as `hf_common_tests`."""
    if not (SUITES_ROOT / PACKAGE / "test_modeling_common.py").exists():
        SUITES_ROOT.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=SUITES_ROOT.parent))
        sdist = _download_sdist(staging)
        _unpack_suites(sdist, staging / PACKAGE)
        if sdist.parent == staging:
            sdist.unlink()
        try:
            staging.rename(SUITES_ROOT)  # atomic: parallel workers never see a half-unpacked folder
        except OSError:
            shutil.rmtree(staging)  # another worker got there first
    if str(SUITES_ROOT) not in sys.path:
        sys.path.insert(0, str(SUITES_ROOT))
