# ruff: noqa: E501  (the cases are shell command lines and one-line checks, kept whole to read as a table)
"""Issue 29's adversarial battery: signals, disk, concurrent runs, odd files, Python API.

Run:  python benchmarks/battery_issue29.py [--only SUBSTRING] [--ids 3,4] [--output results.md]
(its working folder is $MAMO_BATTERY_DIR, /tmp/battery29 by default; the disk cases mount tmpfs folders, so they need
root). One case at a time; each records its command, exit status, last lines of output and a verdict in results.md.
A case FAILs on a traceback, a hang (timeout), or its own check (silent loss, wrong result, corrupt checkpoint).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(os.environ.get("MAMO_BATTERY_DIR", "/tmp/battery29"))
FIX = HERE / "fix"
CASES_DIR = HERE / "cases"
PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
CLI = f"{PY} {REPO}/mamo_hf_cli.py"
TINY = "--image-size 32 --demo-pairs 64 --eval-pairs 8 --batch-size 4 --num-workers 0 --report-to csv"


@dataclass
class Case:
    category: str
    name: str
    steps: list  # shell commands run one after the other in the case's folder
    check: object = None  # f(result) -> None (ok) or a string naming the failure
    setup: object = None  # f(folder)
    during: object = None  # f(process, folder, output_file), in a thread while the first step runs
    timeout: int = 90
    allow_traceback: bool = False


@dataclass
class Result:
    rcs: list = field(default_factory=list)
    outs: list = field(default_factory=list)
    folder: Path = None
    note: str = ""

    @property
    def rc(self):
        return self.rcs[-1]

    @property
    def out(self):
        return self.outs[-1]

    @property
    def all(self):
        return "\n".join(self.outs)


CASES: list[Case] = []


def case(category, name, steps, **kw):
    CASES.append(Case(category, name, [steps] if isinstance(steps, str) else steps, **kw))


# ---------------------------------------------------------------- helpers for checks and moments


def wait_for(predicate, timeout=60.0, poll=0.002):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(poll)
    return False


def killpg(process, sig):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def text_in(file, needle):
    return lambda: needle in Path(file).read_text(errors="replace")


def signal_when(predicate, sig=signal.SIGINT, delay=0.0, twice=False, timeout=60):
    def during(process, folder, out):
        hit = wait_for(lambda: predicate(folder, out) or process.poll() is not None, timeout)
        if process.poll() is not None:
            during.note = "process ended before the moment came"
            return
        time.sleep(delay)
        killpg(process, sig)
        during.note = f"sent {signal.Signals(sig).name}" + (" (moment hit)" if hit else " (moment not hit)")
        if twice:
            time.sleep(0.05)
            killpg(process, sig)
            during.note += " twice"

    during.note = ""
    return during


def out_has(needle):
    return lambda folder, out: needle in Path(out).read_text(errors="replace")


def exists(relative):
    return lambda folder, out: any(folder.glob(relative))


def ok_if(condition, failure):
    return lambda r: None if condition(r) else failure(r) if callable(failure) else failure


def one_line_error(rc=None, pattern=None, step=-1):
    """The step failed (non-zero, or `rc`) with a `mamo-hf ...: error:` line, or a line containing `pattern`."""

    def check(r):
        out, code = r.outs[step], r.rcs[step]
        if code == 0 and rc != 0:
            if rc is None:
                return "exit 0 where an error was expected"
        if rc is not None and code != rc:
            return f"exit {code}, expected {rc}"
        if pattern and pattern.lower() not in out.lower():
            return f"no line with {pattern!r}"
        if not pattern and "error" not in out.lower():
            return "no error line"
        return None

    return check


def succeeded(step=-1, pattern=None):
    def check(r):
        if r.rcs[step] != 0:
            return f"exit {r.rcs[step]} where success was expected"
        if pattern and pattern not in r.outs[step]:
            return f"output lacks {pattern!r}"
        return None

    return check


def both(*checks):
    def check(r):
        for one in checks:
            problem = one(r)
            if problem:
                return problem
        return None

    return check


def interrupted_cleanly(step=0, expect_rc=130):
    def check(r):
        out, code = r.outs[step], r.rcs[step]
        if code == 0:
            done = ("Done", "Wrote", "Indexed", "wrote", "Pre-trained")
            return None if any(word in out for word in done) else "exit 0 without finishing"
        if code != expect_rc and not (expect_rc == 130 and code == -2):
            return f"exit {code}, expected {expect_rc}"
        if "interrupted" not in out.lower() and "resume" not in out.lower():
            return "no line saying it was interrupted"
        if "Exception ignored" in out:
            return "'Exception ignored' noise after the interruption"
        return None

    return check


def resumed_or_told(step=1):
    """The follow-up run finished, or refused in one line that names the checkpoint situation."""
    return lambda r: None if r.rcs[step] == 0 else one_line_error(1, "checkpoint", step=step)(r)


def sigterm_clean(step=0):
    """SIGTERM (a scheduler, `kill`, `docker stop`) ends the run like Ctrl-C: one line, and an exit status."""

    def check(r):
        code = r.rcs[step]
        if code == -15:
            return "SIGTERM killed the run without a word (exit -15: no line, lock and staging left behind)"
        return interrupted_cleanly(step, expect_rc=code if code in (130, 143) else 143)(r)

    return check


# ---------------------------------------------------------------- fixtures


def pretrain_cmd(output, extra=""):
    return f"{CLI} pretrain {TINY} --output-dir {output} {extra}"


def build_fixtures():
    if (FIX / "done").exists():
        return
    shutil.rmtree(FIX, ignore_errors=True)
    FIX.mkdir(parents=True)
    run = lambda cmd: subprocess.run(cmd, shell=True, cwd=FIX, check=True, env=env(), capture_output=True)  # noqa
    run(f"{CLI} demo-data --output data --num-pairs 16 --seed 3 --image-size 32")
    run(f"{CLI} demo-data --output many --num-pairs 400 --seed 4 --image-size 64")
    run(pretrain_cmd("model", "--max-steps 4 --checkpoint-every 2"))
    run(pretrain_cmd("model2", "--max-steps 2 --seed 5"))
    (FIX / "done").write_text("ok")


def env():
    e = dict(
        os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false"
    )
    e.pop("PYTHONWARNINGS", None)
    return e


def copy_fixture(name, to=None):
    def setup(folder):
        shutil.copytree(FIX / name, folder / (to or name), symlinks=True)

    return setup


def setups(*functions):
    def setup(folder):
        for function in functions:
            function(folder)

    return setup


# ---------------------------------------------------------------- images and files


def save_images(folder, specs):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, kind in specs:
        path = folder / name
        if kind == "rgb":
            Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
        elif kind == "1x1":
            Image.new("RGB", (1, 1), (1, 2, 3)).save(path)
        elif kind == "png16":
            import numpy as np

            Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype("uint16")).save(path)
        elif kind == "cmyk":
            Image.new("CMYK", (32, 32), (0, 200, 200, 0)).save(path, "JPEG")
        elif kind == "gif":
            frames = [Image.new("P", (32, 32), i) for i in range(3)]
            frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
        elif kind == "palette_transparent":
            image = Image.new("P", (32, 32), 0)
            image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
            image.info["transparency"] = 0
            image.save(path, transparency=0)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "png_as_jpg":
            Image.new("RGB", (32, 32), (0, 0, 200)).save(path, "PNG")
        elif kind == "text":
            path.write_text("this is not an image\n")
        elif kind == "dir":
            path.mkdir()
        elif kind == "la":
            Image.new("LA", (32, 32), (100, 50)).save(path)
        elif kind == "rgba":
            Image.new("RGBA", (40, 24), (0, 200, 0, 100)).save(path)
        elif kind == "truncated":
            Image.new("RGB", (64, 64), (5, 5, 5)).save(path, "JPEG")
            path.write_bytes(path.read_bytes()[:200])
        else:
            raise ValueError(kind)


def caption_file(folder, records, name="caps.json", encoding="utf-8", bom=False, newline="\n", jsonl=False):
    if jsonl:
        text = newline.join(json.dumps(record, ensure_ascii=False) for record in records) + newline
    else:
        text = json.dumps(records, ensure_ascii=False, indent=1).replace("\n", newline)
    data = text.encode(encoding)
    (folder / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)


DEMO_CAPTION = "there is a large red circle at the top left"


def odd_data(kinds, captions=None):
    """A folder `odd/` with one image per kind plus 8 plain ones, and `odd/caps.json` naming them all."""

    def setup(folder):
        specs = [(f"plain{i}.png", "rgb") for i in range(8)] + [(name, kind) for name, kind in kinds]
        save_images(folder / "odd", specs)
        caption = captions or DEMO_CAPTION
        caption_file(folder / "odd", [{"image": name, "caption": caption} for name, _ in specs])

    return setup


def pretrain_odd(extra=""):
    return f"{CLI} pretrain {TINY} --train-file odd/caps.json --eval-pairs 0 --max-steps 2 --output-dir out {extra}"


def report_names(*names):
    def check(r):
        if r.rc != 0:
            return f"exit {r.rc}"
        missing = [name for name in names if name not in r.out]
        return f"skip report does not name {missing}" if missing else None

    return check


# ================================================================ SIGNALS

PRETRAIN_LONG = pretrain_cmd("run", "--max-steps 400 --checkpoint-every 1000 --eval-pairs 0")

case(
    "signals",
    "pretrain: SIGINT during the first steps, before any checkpoint",
    PRETRAIN_LONG,
    during=signal_when(out_has("pre-training:"), delay=1.0),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "pretrain: SIGINT before the first checkpoint, then a plain rerun into the same folder",
    [PRETRAIN_LONG, pretrain_cmd("run", "--max-steps 2 --eval-pairs 0")],
    during=signal_when(out_has("pre-training:"), delay=1.0),
    check=both(
        interrupted_cleanly(), lambda r: succeeded(step=1)(r) and one_line_error(1, "--overwrite-output-dir")(r)
    ),
)
case(
    "signals",
    "pretrain: SIGINT during the zero-shot evaluation before training",
    pretrain_cmd("run", "--max-steps 3 --eval-pairs 300"),
    during=signal_when(out_has("Training on"), delay=0.3),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "pretrain: SIGINT during the zero-shot evaluation after training",
    pretrain_cmd("run", "--max-steps 3 --eval-pairs 300"),
    during=signal_when(out_has("3/3"), delay=0.2),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "pretrain: SIGINT while a checkpoint is being written, then --resume latest",
    [
        pretrain_cmd("run", "--max-steps 400 --checkpoint-every 3 --eval-pairs 0"),
        pretrain_cmd("run", "--max-steps 8 --checkpoint-every 3 --eval-pairs 0 --resume latest"),
    ],
    during=signal_when(exists("run/.checkpoint-*.tmp")),
    check=both(interrupted_cleanly(), resumed_or_told()),
)
case(
    "signals",
    "pretrain: SIGTERM while a checkpoint is being written, then --resume latest",
    [
        pretrain_cmd("run", "--max-steps 400 --checkpoint-every 3 --eval-pairs 0"),
        pretrain_cmd("run", "--max-steps 8 --checkpoint-every 3 --eval-pairs 0 --resume latest"),
    ],
    during=signal_when(exists("run/.checkpoint-*.tmp"), sig=signal.SIGTERM),
    check=both(sigterm_clean(), resumed_or_told()),
)
case(
    "signals",
    "pretrain: SIGTERM before the first checkpoint, then a plain rerun",
    [PRETRAIN_LONG, pretrain_cmd("run", "--max-steps 2 --eval-pairs 0")],
    during=signal_when(out_has("pre-training:"), sig=signal.SIGTERM, delay=1.0),
    check=both(sigterm_clean(), lambda r: succeeded(step=1)(r) and one_line_error(1, "--overwrite-output-dir")(r)),
)
case(
    "signals",
    "pretrain: SIGTERM ends with a clear status and a resumable state",
    [
        pretrain_cmd("run", "--max-steps 400 --checkpoint-every 2 --eval-pairs 0"),
        pretrain_cmd("run", "--max-steps 80 --checkpoint-every 2 --eval-pairs 0 --resume latest"),
    ],
    during=signal_when(exists("run/checkpoint-4"), sig=signal.SIGTERM, delay=0.3),
    check=both(sigterm_clean(), succeeded(step=1, pattern="Done")),
)
case(
    "signals",
    "pretrain: two Ctrl-C 50 ms apart during training",
    PRETRAIN_LONG,
    during=signal_when(out_has("pre-training:"), delay=1.0, twice=True),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "pretrain: two Ctrl-C during a checkpoint save leave a resumable folder",
    [
        pretrain_cmd("run", "--max-steps 400 --checkpoint-every 3 --eval-pairs 0"),
        pretrain_cmd("run", "--max-steps 8 --checkpoint-every 3 --eval-pairs 0 --resume latest"),
    ],
    during=signal_when(exists("run/.checkpoint-*.tmp"), twice=True),
    check=both(interrupted_cleanly(), resumed_or_told()),
)
case(
    "signals",
    "pretrain: Ctrl-C while the package is still importing",
    PRETRAIN_LONG,
    during=signal_when(lambda folder, out: True, delay=1.5),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "pretrain: Ctrl-C with 2 DataLoader workers (whole process group)",
    pretrain_cmd("run", "--max-steps 400 --checkpoint-every 1000 --eval-pairs 0 --num-workers 2"),
    during=signal_when(out_has("pre-training:"), delay=2.0),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "pretrain: Ctrl-C after a checkpoint names it, and --resume latest continues",
    [
        pretrain_cmd("run", "--max-steps 400 --checkpoint-every 2 --eval-pairs 0"),
        pretrain_cmd("run", "--max-steps 6 --checkpoint-every 2 --eval-pairs 0 --resume latest"),
    ],
    during=signal_when(exists("run/checkpoint-2"), delay=0.2),
    check=both(
        interrupted_cleanly(),
        ok_if(lambda r: "checkpoint-" in r.outs[0], "the line names no checkpoint"),
        succeeded(step=1, pattern="Done"),
    ),
)
case(
    "signals",
    "pretrain: Ctrl-C while the final model is being written, then the folder is usable",
    [
        pretrain_cmd("run", "--max-steps 3 --eval-pairs 0 --checkpoint-every 3"),
        pretrain_cmd("run", "--max-steps 3 --eval-pairs 0 --checkpoint-every 3 --resume latest"),
    ],
    during=signal_when(exists("run/.final-model.tmp")),
    check=both(interrupted_cleanly(), succeeded(step=1)),
)
case(
    "signals",
    "pretrain: SIGKILL while the final model is being moved in, then --resume latest",
    [
        pretrain_cmd("run", "--max-steps 3 --eval-pairs 0 --checkpoint-every 3"),
        pretrain_cmd("run", "--max-steps 3 --eval-pairs 0 --checkpoint-every 3 --resume latest"),
        f"{PY} -c \"import mamo_hf; from mamo_hf import MamoForPreTraining as M; M.from_pretrained('run'); print('loaded')\"",
    ],
    during=signal_when(exists("run/.final-model.tmp"), sig=signal.SIGKILL),
    check=succeeded(step=2, pattern="loaded"),
)
case(
    "signals",
    "demo: Ctrl-C during training",
    f"{CLI} demo {TINY} --max-steps 400 --eval-pairs 0 --output-dir demo",
    during=signal_when(out_has("pre-training:"), delay=1.0),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "demo: Ctrl-C during the evaluation before training",
    f"{CLI} demo {TINY} --max-steps 3 --eval-pairs 300 --output-dir demo",
    during=signal_when(out_has("Training on"), delay=0.3),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "demo: two Ctrl-C, then demo again into the same folder",
    [
        f"{CLI} demo {TINY} --max-steps 400 --eval-pairs 0 --output-dir demo",
        f"{CLI} demo {TINY} --max-steps 2 --eval-pairs 0 --output-dir demo",
    ],
    during=signal_when(out_has("pre-training:"), delay=1.0, twice=True),
    check=both(interrupted_cleanly(), succeeded(step=1)),
)
case(
    "signals",
    "demo: SIGTERM, then demo again into the same folder",
    [
        f"{CLI} demo {TINY} --max-steps 400 --eval-pairs 0 --output-dir demo",
        f"{CLI} demo {TINY} --max-steps 2 --eval-pairs 0 --output-dir demo",
    ],
    during=signal_when(out_has("pre-training:"), sig=signal.SIGTERM, delay=1.0),
    check=both(sigterm_clean(), succeeded(step=1)),
)


def index_twice_setup(folder):
    shutil.copytree(FIX / "many" / "images", folder / "imgs")
    shutil.copytree(FIX / "model", folder / "model")


def index_intact(step):
    def check(r):
        path = r.folder / "imgs" / ".mamo-index.safetensors"
        probe = subprocess.run(
            [
                PY,
                "-c",
                f"from mamo_hf.search import read_index; m, f = read_index(__import__('pathlib').Path('{path}'));"
                " print(len(m['entries']), tuple(f.shape))",
            ],
            capture_output=True,
            text=True,
            env=env(),
        )
        r.note += f" index after: {probe.stdout.strip() or probe.stderr.strip()[-200:]}"
        return None if probe.returncode == 0 else "the index is not readable after the interruption"

    return check


case(
    "signals",
    "index: Ctrl-C while embedding a second time leaves the previous index whole",
    [
        f"{CLI} index imgs --model model --batch-size 400",
        "touch imgs/*.png && " + f"{CLI} index imgs --model model --batch-size 8",
    ],
    setup=index_twice_setup,
    during=None,
    check=None,
)  # replaced below (the signal must go to the second step)
CASES.pop()


def signal_second_step(case_, predicate, sig=signal.SIGINT, delay=0.0, twice=False):
    case_.during_step = 1
    case_.during = signal_when(predicate, sig, delay, twice)
    return case_


for sig, twice, label in (
    (signal.SIGINT, False, "Ctrl-C"),
    (signal.SIGTERM, False, "SIGTERM"),
    (signal.SIGINT, True, "two Ctrl-C"),
):
    c = Case(
        "signals",
        f"index: {label} while re-embedding 400 images leaves the previous index whole",
        [
            f"{CLI} index imgs --model model",
            f"touch imgs/*.png && {CLI} index imgs --model model --batch-size 1",
            f"{CLI} search imgs 'a red circle' --model model --no-update",
        ],
        setup=index_twice_setup,
        check=None,
    )
    signal_second_step(c, lambda folder, out: True, sig, delay=7.5, twice=twice)
    c.check = (
        lambda label: (
            lambda r: (
                (None if r.rcs[1] != 0 or "Indexed" in r.outs[1] else f"second index exit {r.rcs[1]}")
                or (interrupted_cleanly(step=1)(r) if label != "SIGTERM" else sigterm_clean(step=1)(r))
                or index_intact(1)(r)
                or (None if r.rcs[2] == 0 or "run without --no-update" in r.outs[2] else "search after it failed")
            )
        )
    )(label)
    CASES.append(c)

case(
    "signals",
    "search: Ctrl-C while the model loads",
    f"{CLI} search data/images 'a red circle' --model model",
    setup=setups(copy_fixture("data"), copy_fixture("model")),
    during=signal_when(lambda folder, out: True, delay=4.0),
    check=interrupted_cleanly(),
)
case(
    "signals",
    "demo-data: Ctrl-C while writing 5000 pairs, then a rerun into the same folder",
    [
        f"{CLI} demo-data --output dd --num-pairs 5000 --image-size 32",
        f"{CLI} demo-data --output dd --num-pairs 4 --image-size 32",
    ],
    during=signal_when(exists("dd/images/000100.png"), delay=0.1),
    check=both(interrupted_cleanly(), lambda r: succeeded(step=1)(r) and one_line_error(1, "--output", step=1)(r)),
)
case(
    "signals",
    "eval: Ctrl-C during retrieval scoring",
    f"{CLI} eval model --benchmark retrieval --retrieval-file many/captions.json --k 8",
    setup=setups(copy_fixture("many"), copy_fixture("model")),
    during=signal_when(lambda folder, out: True, delay=9.0),
    check=interrupted_cleanly(),
)

# ================================================================ DISK


MOUNTS = []  # this machine runs as root, which reads and writes through chmod: read-only and full disks are tmpfs


def tmpfs(relative, size="4m", ro=False, fill=None):
    def setup(folder):
        path = folder / relative
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        MOUNTS.append(path)
        if fill:
            shutil.copytree(fill, path, dirs_exist_ok=True)
        if ro:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)

    return setup


def readonly(relative, fill=None):
    return tmpfs(relative, ro=True, fill=fill)


def remount_ro(relative):
    return lambda folder: subprocess.run(["mount", "-o", "remount,ro", str(folder / relative)], check=True)


case(
    "disk",
    "pretrain: --output-dir is a read-only folder",
    pretrain_cmd("ro", "--max-steps 2"),
    setup=readonly("ro"),
    check=one_line_error(1, "not writable"),
)
case(
    "disk",
    "pretrain: --output-dir inside a read-only folder",
    pretrain_cmd("ro/sub/run", "--max-steps 2"),
    setup=readonly("ro"),
    check=one_line_error(1, "cannot create"),
)
case(
    "disk",
    "pretrain: output folder deleted after the first checkpoint",
    pretrain_cmd("run", "--max-steps 30 --checkpoint-every 2 --eval-pairs 0"),
    during=lambda p, folder, out: (
        wait_for(lambda: (folder / "run" / "checkpoint-2").exists())
        and shutil.rmtree(folder / "run", ignore_errors=True)
    ),
    check=lambda r: (
        "exit 0 though its folder was deleted: the model went nowhere"
        if r.rc == 0 and not (r.folder / "run" / "model.safetensors").exists()
        else one_line_error(1)(r)
        if r.rc != 0
        else None
    ),
)
case(
    "disk",
    "pretrain: output folder made read-only mid-run (a tmpfs remounted read-only)",
    pretrain_cmd("run", "--max-steps 60 --checkpoint-every 2 --eval-pairs 0"),
    setup=tmpfs("run", size="64m"),
    during=lambda p, folder, out: (
        wait_for(lambda: (folder / "run" / "checkpoint-2").exists()) and remount_ro("run")(folder)
    ),
    check=one_line_error(1, "could not write"),
)
CKPT = "model/checkpoint-4"
RESUME = pretrain_cmd("model", "--max-steps 6 --checkpoint-every 2 --resume latest")


def damage(relative, how):
    def setup(folder):
        shutil.copytree(FIX / "model", folder / "model")
        path = folder / relative
        if how == "chmod000":
            path.chmod(0o000)
        elif how == "truncate":
            path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
        elif how == "emptied":
            shutil.rmtree(path)
            path.mkdir()
        elif how == "folder":
            path.unlink()
            path.mkdir()
        elif how == "dangling":
            path.unlink()
            os.symlink("/nonexistent/model.safetensors", path)
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "delete":
            path.unlink() if path.is_file() else shutil.rmtree(path)
        elif how == "readonly":
            for file in path.iterdir():
                file.chmod(0o444)
            path.chmod(0o555)
        elif how == "garbage":
            path.write_bytes(os.urandom(path.stat().st_size))

    return setup


for relative, how, expect in (
    (CKPT, "emptied", "Resumed from model/checkpoint-2"),
    (f"{CKPT}/model.safetensors", "truncate", "model.safetensors"),
    (f"{CKPT}/optimizer.bin", "truncate", "optimizer.bin"),
    (f"{CKPT}/training_state.json", "truncate", "training_state.json"),
    (f"{CKPT}/training_state.json", "empty", "training_state.json"),
    (f"{CKPT}/model.safetensors", "delete", "model.safetensors"),
    (f"{CKPT}/optimizer.bin", "folder", "optimizer.bin"),
    (f"{CKPT}/model.safetensors", "dangling", "model.safetensors"),
    (f"{CKPT}/model.safetensors", "garbage", "model.safetensors"),
):
    case(
        "disk",
        f"pretrain --resume latest: {relative.split('/', 1)[1]} {how}",
        RESUME,
        setup=damage(relative, how),
        check=one_line_error(1, expect) if "Resumed" not in expect else succeeded(pattern=expect),
    )
case(
    "disk",
    "pretrain --resume latest: the run folder is on a read-only disk",
    RESUME,
    setup=setups(tmpfs("model", size="64m", fill=FIX / "model"), remount_ro("model")),
    check=one_line_error(1, "writ"),
)
case(
    "disk",
    "pretrain --resume: a file instead of a checkpoint folder",
    pretrain_cmd("model", "--max-steps 6 --resume model/config.json"),
    setup=copy_fixture("model"),
    check=one_line_error(1, "--resume"),
)
case(
    "disk",
    "pretrain --resume latest into a folder without checkpoints",
    pretrain_cmd("fresh", "--max-steps 2 --resume latest"),
    check=one_line_error(1, "checkpoint"),
)
case(
    "disk",
    "pretrain: the annotation file is a dangling symlink",
    f"ln -s /nonexistent/c.json c.json; {CLI} pretrain {TINY} --train-file c.json --eval-pairs 0 --max-steps 2 "
    "--output-dir out",
    check=one_line_error(1, "c.json"),
)
case(
    "disk",
    "pretrain: one image is a dangling symlink: skipped and named",
    f"{CLI} pretrain {TINY} --train-file data/captions.json --max-steps 2 --eval-pairs 0 --output-dir out",
    setup=setups(
        copy_fixture("data"),
        lambda f: (
            (f / "data/images/000003.png").unlink(),
            os.symlink("/nonexistent.png", f / "data/images/000003.png"),
        ),
    ),
    check=report_names("000003.png"),
)
case(
    "disk",
    "pretrain: a full disk (tmpfs of 3 MB) while writing the first checkpoint",
    pretrain_cmd("run", "--max-steps 4 --checkpoint-every 2 --eval-pairs 0"),
    setup=tmpfs("run", size="3m"),
    check=lambda r: (
        one_line_error(1, "could not write")(r)
        or ("a partial checkpoint was left" if list((r.folder / "run").glob("*checkpoint-*")) else None)
    ),
)
case(
    "disk",
    "pretrain: a full disk (tmpfs of 2 MB) while writing the final model",
    pretrain_cmd("run", "--max-steps 2 --checkpoint-every 1000 --eval-pairs 0"),
    setup=tmpfs("run", size="2m"),
    check=lambda r: (
        one_line_error(1, "could not write")(r)
        or (
            "a config.json without weights"
            if (r.folder / "run/config.json").exists() and not (r.folder / "run/model.safetensors").exists()
            else None
        )
    ),
)
case(
    "disk",
    "pretrain: a full disk (file size limit 60 KB) while writing a checkpoint",
    "ulimit -f 60; " + pretrain_cmd("run", "--max-steps 4 --checkpoint-every 2 --eval-pairs 0"),
    check=lambda r: (
        one_line_error(1, "could not write")(r)
        or ("a partial checkpoint was left" if list((r.folder / "run").glob("checkpoint-*")) else None)
    ),
)
case(
    "disk",
    "pretrain: a full disk (file size limit 300 KB) while writing the final model",
    "ulimit -f 300; " + pretrain_cmd("run", "--max-steps 2 --checkpoint-every 1000 --eval-pairs 0"),
    check=one_line_error(1, "could not write"),
)
case(
    "disk",
    "pretrain: a fresh lock file that names no owner",
    pretrain_cmd("run", "--max-steps 2"),
    setup=lambda f: ((f / "run").mkdir(), (f / "run/.mamo_run.lock").write_text("{}")),
    check=lambda r: None if r.rc == 0 or "error" in r.out.lower() else "no error line",
)
case(
    "disk",
    "pretrain --resume latest: logs/mamo/metrics.csv replaced by a folder",
    RESUME,
    setup=setups(
        copy_fixture("model"),
        lambda f: ((f / "model/logs/mamo/metrics.csv").unlink(), (f / "model/logs/mamo/metrics.csv").mkdir()),
    ),
    check=lambda r: None if r.rc == 0 else one_line_error(1)(r),
)
case(
    "disk",
    "demo-data: --output inside a read-only folder",
    f"{CLI} demo-data --output ro/dd --num-pairs 4 --image-size 32",
    setup=readonly("ro"),
    check=one_line_error(None),
)
case(
    "disk",
    "demo-data: --output is a file",
    f"touch f && {CLI} demo-data --output f --num-pairs 4 --image-size 32",
    check=one_line_error(None, "f"),
)
case(
    "disk",
    "index: the image folder is read-only (the index goes in it)",
    f"{CLI} index ro --model model",
    setup=setups(copy_fixture("model"), readonly("ro", fill=FIX / "data/images")),
    check=one_line_error(None, "ro"),
)
case(
    "disk",
    "index: a full disk (file size limit 2 KB) while writing the index",
    f"{CLI} index data/images --model model --index idx/i.safetensors && echo; ulimit -f 2; touch data/images/*; "
    f"{CLI} index many/images --model model --index idx/i.safetensors",
    setup=setups(copy_fixture("model"), copy_fixture("data"), copy_fixture("many"), lambda f: (f / "idx").mkdir()),
    check=lambda r: (
        one_line_error(None)(r)
        or ("a partial index file was left behind" if list((r.folder / "idx").glob("*.tmp")) else None)
    ),
)
case(
    "disk",
    "search: the index file replaced by a dangling symlink",
    [
        f"{CLI} index data/images --model model",
        "rm data/images/.mamo-index.safetensors; ln -s /nonexistent data/images/.mamo-index.safetensors",
        f"{CLI} search data/images 'a red circle' --model model --no-update",
    ],
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=one_line_error(None, "index"),
)
case(
    "disk",
    "search: the index file is truncated",
    [
        f"{CLI} index data/images --model model",
        "truncate -s 100 data/images/.mamo-index.safetensors",
        f"{CLI} search data/images 'a red circle' --model model",
    ],
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=one_line_error(None, "index"),
)
case(
    "disk",
    "index: the index file is an empty file",
    [f"touch data/images/.mamo-index.safetensors && {CLI} index data/images --model model"],
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=one_line_error(None, "index"),
)
case(
    "disk",
    "index: a full disk (tmpfs of 400 KB) while writing the index of 400 images",
    f"{CLI} index imgs --model model --index full/i.safetensors",
    setup=setups(index_twice_setup, tmpfs("full", size="40k")),
    check=lambda r: (
        one_line_error(None, "i.safetensors")(r)
        or ("a partial index file was left behind" if list((r.folder / "full").iterdir()) else None)
    ),
)
case(
    "disk",
    "index: an indexed folder made read-only: a re-run needs no write",
    [f"{CLI} index ro --model model", "mount -o remount,ro ro", f"{CLI} index ro --model model"],
    setup=setups(copy_fixture("model"), tmpfs("ro", fill=FIX / "data/images")),
    check=succeeded(pattern="16 unchanged"),
)
case(
    "disk",
    "eval: --output into a read-only folder",
    f"{CLI} eval model --benchmark retrieval --retrieval-file data/captions.json --output-dir ro/report",
    setup=setups(copy_fixture("model"), copy_fixture("data"), readonly("ro")),
    check=one_line_error(None, "ro"),
)

# ================================================================ CONCURRENT

case(
    "concurrent",
    "two pretrain into one folder: the second refuses while the first runs",
    f"{pretrain_cmd('run', '--max-steps 250 --eval-pairs 0')} > first.log 2>&1 & pid=$!; sleep 12; "
    f"{pretrain_cmd('run', '--max-steps 2 --eval-pairs 0')}; rc=$?; wait $pid; tail -2 first.log; exit $rc",
    check=lambda r: one_line_error(1, "in use")(r) or (None if "Done" in r.out else "the first run did not finish"),
    timeout=150,
)
case(
    "concurrent",
    "two pretrain into one folder started in the same instant: exactly one runs",
    f"{pretrain_cmd('run', '--max-steps 3 --eval-pairs 0')} > a.log 2>&1 & "
    f"{pretrain_cmd('run', '--max-steps 3 --eval-pairs 0')} > b.log 2>&1 & wait; cat a.log b.log | grep -E 'Done|error'",
    check=lambda r: None if r.out.count("Done") == 1 and "in use" in r.out else f"not exactly one run: {r.out[-300:]}",
    timeout=150,
)
case(
    "concurrent",
    "pretrain --resume latest while another run writes the folder",
    f"cp -r model m && {pretrain_cmd('m', '--max-steps 600 --checkpoint-every 50 --eval-pairs 0 --resume latest')} "
    f"> first.log 2>&1 & pid=$!; sleep 12; {pretrain_cmd('m', '--max-steps 600 --checkpoint-every 50 --eval-pairs 0 --resume latest')}; rc=$?;"
    " wait $pid; tail -1 first.log; exit $rc",
    setup=copy_fixture("model"),
    check=lambda r: (
        one_line_error(1, "in use")(r) or (None if "Training curves" in r.out else "the first run did not finish")
    ),
    timeout=150,
)
case(
    "concurrent",
    "two demo into one folder at once: the second refuses",
    f"{CLI} demo {TINY} --max-steps 250 --eval-pairs 0 --output-dir d > first.log 2>&1 & pid=$!; sleep 12; "
    f"{CLI} demo {TINY} --max-steps 2 --eval-pairs 0 --output-dir d; rc=$?; wait $pid; sleep 2; tail -1 first.log; exit $rc",
    check=lambda r: (
        one_line_error(1, "in use")(r)
        or (None if "Saved to d" in (r.folder / "first.log").read_text() else "the first run did not finish")
    ),
    timeout=150,
)


def index_complete(n_expected):
    def check(r):
        if "Traceback" in r.all:
            return "traceback"
        probe = subprocess.run(
            [
                PY,
                "-c",
                "from mamo_hf.search import read_index; import pathlib; m, f = read_index(pathlib.Path("
                f"'{r.folder}/imgs/.mamo-index.safetensors')); print(len(m['entries']), f.shape[0])",
            ],
            capture_output=True,
            text=True,
            env=env(),
        )
        r.note += f" final index: {probe.stdout.strip() or probe.stderr.strip()[-150:]}"
        if probe.returncode != 0:
            return "the index is unreadable after two writers"
        entries, rows = map(int, probe.stdout.split())
        if entries != rows:
            return "index entries and features disagree"
        return None if entries == n_expected else f"index holds {entries} images, the folder {n_expected}"

    return check


case(
    "concurrent",
    "two index writers on one index at once",
    f"{CLI} index imgs --model model > a.log 2>&1 & {CLI} index imgs --model model > b.log 2>&1 & wait; cat a.log b.log",
    setup=index_twice_setup,
    check=lambda r: (
        index_complete(400)(r)
        or (None if r.out.count("Indexed") >= 1 else "neither writer finished")
        or (None if "error" not in r.out or "in use" in r.out or "Indexed" in r.out else "unclear failure")
    ),
    timeout=180,
)
case(
    "concurrent",
    "two index writers with different models on one index",
    f"cp -r model2 m2; {CLI} index imgs --model model > a.log 2>&1 & {CLI} index imgs --model m2 > b.log 2>&1 & wait; "
    "cat a.log b.log",
    setup=setups(index_twice_setup, copy_fixture("model2")),
    check=index_complete(400),
    timeout=180,
)
case(
    "concurrent",
    "search while index rewrites the index (three searches during a re-embedding)",
    f"{CLI} index imgs --model model >/dev/null 2>&1; touch imgs/*.png; {CLI} index imgs --model model --batch-size 4 "
    f"> w.log 2>&1 & pid=$!; sleep 7; for i in 1 2 3; do {CLI} search imgs 'a red circle' --model model --no-update "
    "--top-k 1 || echo SEARCHFAIL; done; wait $pid; cat w.log",
    setup=index_twice_setup,
    check=lambda r: "a search failed" if "SEARCHFAIL" in r.out else index_complete(400)(r),
    timeout=200,
)
case(
    "concurrent",
    "search (with update) while another index writes",
    f"{CLI} index imgs --model model >/dev/null 2>&1; touch imgs/*.png; {CLI} index imgs --model model --batch-size 4 "
    f"> w.log 2>&1 & pid=$!; sleep 7; {CLI} search imgs 'a red circle' --model model --top-k 1; rc=$?; "
    "wait $pid; cat w.log; exit $rc",
    setup=index_twice_setup,
    check=lambda r: (None if r.rc == 0 else one_line_error(None)(r)) or index_complete(400)(r),
    timeout=200,
)
case(
    "concurrent",
    "index while half the images are being deleted",
    f"{CLI} index imgs --model model --batch-size 4 > w.log 2>&1 & pid=$!; sleep 8; rm imgs/0000[0-9]*.png imgs/0001*.png; "
    "wait $pid; cat w.log; "
    f"{CLI} index imgs --model model",
    setup=index_twice_setup,
    check=lambda r: (None if "Traceback" not in r.all else "traceback") or index_complete(200)(r),
    timeout=200,
)
case(
    "concurrent",
    "index while images are being added",
    f"{CLI} index imgs --model model --batch-size 4 > w.log 2>&1 & pid=$!; sleep 8; cp ../../fix/data/images/*.png imgs/new "
    "2>/dev/null; mkdir -p imgs/new; cp ../../fix/data/images/*.png imgs/new/; "
    "wait $pid; cat w.log; "
    f"{CLI} index imgs --model model",
    setup=index_twice_setup,
    check=lambda r: (None if "Traceback" not in r.all else "traceback") or index_complete(416)(r),
    timeout=200,
)
case(
    "concurrent",
    "two demo-data into one folder at once: captions.json matches the images",
    f"{CLI} demo-data --output dd --num-pairs 300 --seed 1 --image-size 32 > a.log 2>&1 & "
    f"{CLI} demo-data --output dd --num-pairs 300 --seed 2 --image-size 32 > b.log 2>&1 & wait; cat a.log b.log",
    check=lambda r: None if (r.folder / "dd/captions.json").exists() and "Traceback" not in r.out else "broken",
    timeout=120,
)
case(
    "concurrent",
    "eval while pretrain writes the same model folder (--resume)",
    f"{pretrain_cmd('model', '--max-steps 250 --checkpoint-every 50 --eval-pairs 0 --resume latest')} > w.log 2>&1 & pid=$!;"
    f" sleep 13; {CLI} eval model --benchmark retrieval --retrieval-file data/captions.json --output-dir ev; rc=$?; wait $pid; tail -1 w.log; exit $rc",
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=lambda r: None if r.rc == 0 and "Training curves" in r.out else "eval or the run failed",
    timeout=200,
)

# ================================================================ ODD FILES

for kinds, label, expect in (
    ([("zero.png", "empty")], "a zero-byte image is skipped and named", ["zero.png"]),
    ([("blue.jpg", "png_as_jpg")], "a PNG named .jpg trains", []),
    ([("text.png", "text")], "a text file named .png is skipped and named", ["text.png"]),
    ([("folder.png", "dir")], "a folder named like an image is skipped and named", ["folder.png"]),
    ([("tiny.png", "1x1")], "a 1x1 image trains", []),
    ([("deep.png", "png16")], "a 16-bit PNG trains", []),
    ([("cmyk.jpg", "cmyk")], "a CMYK JPEG trains", []),
    ([("anim.gif", "gif")], "an animated GIF trains", []),
    ([("pal.png", "palette_transparent")], "a palette PNG with transparency trains", []),
    ([("la.png", "la"), ("rgba.png", "rgba")], "LA and RGBA images of another size train", []),
    ([("cut.jpg", "truncated")], "a truncated JPEG is skipped and named", ["cut.jpg"]),
):
    case(
        "odd files",
        f"pretrain: {label}",
        pretrain_odd(),
        setup=odd_data(kinds),
        check=report_names(*expect) if expect else succeeded(pattern="Done"),
    )

case(
    "odd files",
    "pretrain: a symlink loop in the image folder, referenced by a record",
    pretrain_odd(),
    setup=setups(
        odd_data([]),
        lambda f: (
            os.symlink("loop", f / "odd/loop"),
            json.dump(
                [{"image": f"plain{i}.png", "caption": DEMO_CAPTION} for i in range(8)]
                + [{"image": "loop", "caption": DEMO_CAPTION}],
                open(f / "odd/caps.json", "w"),
            ),
        ),
    ),
    check=report_names("loop"),
)
case(
    "odd files",
    "pretrain: an empty (0-byte) caption file",
    f"touch e.json; {CLI} pretrain {TINY} --train-file e.json --eval-pairs 0 --max-steps 2 --output-dir out",
    check=one_line_error(1, "e.json"),
)
case(
    "odd files",
    "pretrain: a caption file holding []",
    f"echo '[]' > e.json; {CLI} pretrain {TINY} --train-file e.json --eval-pairs 0 --max-steps 2 --output-dir out",
    check=one_line_error(1, "e.json"),
)
case(
    "odd files",
    "pretrain: a caption file holding a dict",
    f"echo '{{\"a\": 1}}' > e.json; {CLI} pretrain {TINY} "
    "--train-file e.json --eval-pairs 0 --max-steps 2 --output-dir out",
    check=one_line_error(1, "e.json"),
)


def caption_variant(**kw):
    def setup(folder):
        odd_data([])(folder)
        records = [{"image": f"plain{i}.png", "caption": DEMO_CAPTION} for i in range(8)]
        caption_file(folder / "odd", records, **kw)

    return setup


case(
    "odd files",
    "pretrain: non-UTF-8 (latin-1) caption JSON",
    pretrain_odd(),
    setup=setups(
        odd_data([]),
        lambda f: (f / "odd/caps.json").write_bytes(
            json.dumps([{"image": "plain0.png", "caption": "caf\u00e9 red circle"}] * 8, ensure_ascii=False).encode(
                "latin-1"
            )
        ),
    ),
    check=one_line_error(1, "UTF-8"),
)
case(
    "odd files",
    "pretrain: JSON with a BOM",
    pretrain_odd(),
    setup=caption_variant(bom=True),
    check=succeeded(pattern="Done"),
)
case(
    "odd files",
    "pretrain: JSONL with a BOM and CRLF",
    pretrain_odd().replace("caps.json", "caps.jsonl"),
    setup=caption_variant(bom=True, newline="\r\n", jsonl=True, name="caps.jsonl"),
    check=lambda r: succeeded(pattern="Done")(r) or (None if "No record was skipped" in r.out else "records skipped"),
)
case(
    "odd files",
    "pretrain: JSON with CRLF line endings",
    pretrain_odd(),
    setup=caption_variant(newline="\r\n"),
    check=succeeded(pattern="Done"),
)
case(
    "odd files",
    "pretrain: CSV with a BOM and CRLF",
    pretrain_odd().replace("caps.json", "caps.csv"),
    setup=setups(
        odd_data([]),
        lambda f: (f / "odd/caps.csv").write_bytes(
            b"\xef\xbb\xbfimage,caption\r\n" + b"".join(f"plain{i}.png,{DEMO_CAPTION}\r\n".encode() for i in range(8))
        ),
    ),
    check=lambda r: succeeded(pattern="Done")(r) or (None if "No record was skipped" in r.out else "records skipped"),
)
case(
    "odd files",
    "pretrain: a 1 MB caption line",
    pretrain_odd(),
    setup=odd_data([], captions=("there is a large red circle " * 40000).strip()),
    check=succeeded(pattern="Done"),
)
case(
    "odd files",
    "pretrain: captions of only unknown words with the demo vocabulary",
    pretrain_odd(),
    setup=odd_data([], captions="zebra xylophone quokka"),
    check=one_line_error(1, "--tokenizer"),
)
case(
    "odd files",
    "pretrain: captions that are numbers or null",
    pretrain_odd(),
    setup=setups(
        odd_data([]),
        lambda f: json.dump(
            [{"image": f"plain{i}.png", "caption": DEMO_CAPTION} for i in range(8)]
            + [{"image": "plain0.png", "caption": 42}, {"image": "plain1.png", "caption": None}],
            open(f / "odd/caps.json", "w"),
        ),
    ),
    check=lambda r: (
        succeeded(pattern="Done")(r) or (None if "2 " in r.out or "skipped" in r.out.lower() else "not reported")
    ),
)
case(
    "odd files",
    "pretrain: JSONL with blank lines and a NUL byte line",
    pretrain_odd().replace("caps.json", "caps.jsonl"),
    setup=setups(
        odd_data([]),
        lambda f: (f / "odd/caps.jsonl").write_bytes(
            b"\n".join(json.dumps({"image": f"plain{i}.png", "caption": DEMO_CAPTION}).encode() for i in range(8))
            + b"\n\n   \n\x00\x00\n"
        ),
    ),
    check=succeeded(pattern="Done"),
)
case(
    "odd files",
    "pretrain: image path with spaces and non-ASCII letters",
    pretrain_odd(),
    setup=setups(odd_data([("r\u00e9d c\u00efrcle.png", "rgb")])),
    check=succeeded(pattern="No record was skipped"),
)


def yaml_case(label, text, expect):
    case(
        "odd files",
        f"pretrain --config: {label}",
        f"{CLI} pretrain --config c.yaml {TINY} --max-steps 2 --output-dir out",
        setup=lambda f: (f / "c.yaml").write_bytes(text.encode() if isinstance(text, str) else text),
        check=one_line_error(None, expect) if expect else succeeded(),
    )


yaml_case("batch_size: 'abc'", "batch_size: abc\n", "batch_size")
yaml_case("max_steps: 2.5", "max_steps: 2.5\n", "max_steps")
yaml_case("an unknown key", "batchsize: 4\n", "batchsize")
yaml_case("a list at the top", "- 1\n- 2\n", "c.yaml")
yaml_case("a YAML syntax error", "batch_size: [1, 2\n", "c.yaml")
yaml_case("an empty file", "", None)
yaml_case("learning_rate as a string '1e-3' (read as the number, by design)", "learning_rate: '1e-3'\n", None)
yaml_case("train_file: a string, not a list", "train_file: nope.json\n", "nope.json")
yaml_case("model_config: a list", "model_config: [1, 2]\n", "model_config")
yaml_case("non-UTF-8 bytes", b"output_dir: caf\xe9\n", "c.yaml")
yaml_case("a BOM and CRLF", b"\xef\xbb\xbfmax_steps: 2\r\neval_pairs: 0\r\n", None)
yaml_case("report_to: null", "report_to: null\n", "report_to")


def model_with_config(edit):
    def setup(folder):
        shutil.copytree(FIX / "model", folder / "model")
        shutil.copytree(FIX / "data", folder / "data")
        path = folder / "model/config.json"
        config = json.loads(path.read_text())
        result = edit(config)
        if isinstance(result, bytes):
            path.write_bytes(result)
        else:
            path.write_text(json.dumps(config))

    return setup


def drop(*keys):
    def edit(config):
        for key in keys:
            if key in config:
                del config[key]
            for sub in ("vision_config", "text_config"):
                if isinstance(config.get(sub), dict):
                    config[sub].pop(key, None)

    return edit


for label, edit in (
    ("config.json is empty", lambda c: b""),
    ("config.json is not UTF-8", lambda c: b"\xff\xfe{"),
    ("config.json lacks model_type", drop("model_type")),
    ("config.json lacks hidden_size", drop("hidden_size")),
    ("config.json lacks vision_config", lambda c: c.pop("vision_config", None)),
    ("config.json holds a list", lambda c: b"[1, 2]"),
):
    case(
        "odd files",
        f"index --model: {label}",
        f"{CLI} index data/images --model model",
        setup=model_with_config(edit),
        check=lambda r: (
            None
            if r.rc != 0 and "Traceback" not in r.out and "error" in r.out.lower()
            else ("silently loaded a model with other shapes" if r.rc == 0 else "no error line")
        ),
    )
case(
    "odd files",
    "pretrain --init: config.json lacks model_type",
    f"{CLI} pretrain --init model {TINY} --max-steps 2 --output-dir out",
    setup=model_with_config(drop("model_type")),
    check=one_line_error(1, "--init"),
)

case(
    "odd files",
    "index: a folder of odd images (zero-byte, 16-bit, CMYK, GIF, palette, 1x1, text, dir, loop)",
    f"{CLI} index odd --model model",
    setup=setups(
        copy_fixture("model"),
        odd_data(
            [
                ("zero.png", "empty"),
                ("deep.png", "png16"),
                ("cmyk.jpg", "cmyk"),
                ("anim.gif", "gif"),
                ("pal.png", "palette_transparent"),
                ("tiny.png", "1x1"),
                ("text.png", "text"),
                ("folder.png", "dir"),
                ("blue.jpg", "png_as_jpg"),
                ("cut.jpg", "truncated"),
            ]
        ),
        lambda f: os.symlink(".", f / "odd/loop"),
        lambda f: os.symlink("nowhere.png", f / "odd/dangling.png"),
    ),
    check=lambda r: (
        succeeded(pattern="14 images")(r) or (None if "3 unreadable" in r.out else "unreadable count wrong")
    ),
    timeout=60,
)
case(
    "odd files",
    "search: a query of non-UTF-8 bytes",
    [f"{CLI} index data/images --model model", f"{CLI} search data/images $'\\xff\\xfe red' --model model"],
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=lambda r: None if "Traceback" not in r.out else "traceback",
)
case(
    "odd files",
    "search: a query of only unknown words",
    f"{CLI} search data/images 'zebra xylophone' --model model",
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=one_line_error(None, "none of its words is known"),
)
case(
    "odd files",
    "search: a 20,000-word query",
    f"{CLI} search data/images \"$(yes red | head -20000 | tr '\\n' ' ')\" --model model",
    setup=setups(copy_fixture("model"), copy_fixture("data")),
    check=succeeded(),
)
case(
    "odd files",
    "eval --retrieval: a caption file with a BOM and CRLF",
    f"{CLI} eval model --benchmark retrieval --retrieval-file data/c2.json",
    setup=setups(
        copy_fixture("model"),
        copy_fixture("data"),
        lambda f: (f / "data/c2.json").write_bytes(
            b"\xef\xbb\xbf" + (f / "data/captions.json").read_bytes().replace(b"\n", b"\r\n")
        ),
    ),
    check=succeeded(),
)
case(
    "odd files",
    "eval --retrieval: an empty caption file",
    f"touch e.json; {CLI} eval model --benchmark retrieval --retrieval-file e.json",
    setup=copy_fixture("model"),
    check=one_line_error(None, "e.json"),
)
case(
    "odd files",
    "pretrain --tokenizer: an empty folder",
    f"mkdir tok; {CLI} pretrain {TINY} --tokenizer tok --max-steps 2 --output-dir out",
    check=one_line_error(None, "--tokenizer"),
)

# ================================================================ PYTHON API

API_HEAD = (
    "import warnings, torch, numpy as np; warnings.filterwarnings('ignore'); import mamo_hf; "
    "from PIL import Image; from mamo_hf import *; from transformers import AutoProcessor; "
    "def attempt(label, function):\n"
    "    try:\n"
    "        value = function(); print('RETURNED', label, value if not hasattr(value, 'keys') else list(value.keys()))\n"
    "    except Exception as error:\n"
    "        print('RAISED', label, type(error).__name__ + ':', str(error).strip().splitlines()[0][:300] if str(error).strip() else '')\n"
)


def api(name, body, check, setup=None, timeout=90):
    script = API_HEAD.replace("; def", "\ndef") + body
    case(
        "python API",
        name,
        f"{PY} api.py",
        setup=setups(copy_fixture("model"), lambda f: (f / "api.py").write_text(script), *([setup] if setup else [])),
        check=check,
        timeout=timeout,
    )


def raised(*types, pattern=None):
    def check(r):
        line = next((text for text in r.out.splitlines() if text.startswith(("RAISED", "RETURNED"))), "")
        r.note = line[:200]
        if not line.startswith("RAISED"):
            return "no error: " + line[:150]
        if types and not any(f" {t}:" in line for t in types):
            return "unclear error type: " + line[:150]
        if pattern and pattern.lower() not in line.lower():
            return f"the message does not say {pattern!r}: {line[:150]}"
        return None

    return check


def returned(pattern=None):
    def check(r):
        lines = [text for text in r.out.splitlines() if text.startswith(("RAISED", "RETURNED", "CHECK"))]
        r.note = " | ".join(lines)[:300]
        bad = [text for text in lines if text.startswith(("RAISED", "CHECK False"))]
        if bad:
            return bad[0][:200]
        if pattern and pattern not in r.out:
            return f"output lacks {pattern!r}"
        return None if lines else "no result"

    return check


api(
    "from_pretrained on an empty folder",
    "import os; os.mkdir('empty'); attempt('load', lambda: MamoForPreTraining.from_pretrained('empty'))",
    raised("OSError", pattern="empty"),
)
api(
    "from_pretrained on a BERT folder",
    "from transformers import BertConfig, BertModel; BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, "
    "num_attention_heads=2, intermediate_size=64)).save_pretrained('bert');"
    "attempt('load', lambda: MamoForPreTraining.from_pretrained('bert'))",
    lambda r: None if "RAISED" in r.out or "model of type `bert`" in r.out else "silently loaded",
)
api(
    "from_pretrained on a file path",
    "attempt('load', lambda: MamoForPreTraining.from_pretrained('model/config.json'))",
    raised("OSError", "ValueError"),
)
api(
    "from_pretrained on a checkpoint-N folder (no config.json)",
    "attempt('load', lambda: MamoForPreTraining.from_pretrained('model/checkpoint-4'))",
    raised("OSError"),
)
api(
    "from_pretrained with truncated weights",
    "p='model/model.safetensors'; b=open(p,'rb').read(); open(p,'wb').write(b[:len(b)//2]);"
    "attempt('load', lambda: MamoForPreTraining.from_pretrained('model'))",
    raised("SafetensorError", "OSError"),
)
api(
    "from_pretrained with dtype=torch.float16 on CPU, then a forward",
    "m = MamoModel.from_pretrained('model', dtype=torch.float16).eval(); p = AutoProcessor.from_pretrained('model');"
    "x = p(images=[Image.new('RGB', (32, 32))], text=['a red circle'], return_tensors='pt');"
    "attempt('forward', lambda: print('CHECK', torch.isfinite(m(**x).logits_per_image.float()).all().item()))",
    returned(),
)
api(
    "from_pretrained with dtype=torch.bfloat16, get_image_features from float32 pixels",
    "m = MamoModel.from_pretrained('model', dtype=torch.bfloat16).eval(); p = AutoProcessor.from_pretrained('model');"
    "x = p(images=[Image.new('RGB', (32, 32))], return_tensors='pt');"
    "attempt('features', lambda: m.get_image_features(pixel_values=x['pixel_values']).pooler_output.dtype)",
    returned(),
)
api(
    "processor: images of mixed modes and sizes",
    "import numpy as np; p = AutoProcessor.from_pretrained('model');"
    "ims = [Image.new('RGB', (32, 32)), Image.new('L', (50, 20)), Image.new('RGBA', (10, 70)), Image.new('P', (33, 33)),"
    " Image.fromarray(np.zeros((20, 20), dtype=np.uint16)), Image.new('CMYK', (16, 16)), Image.new('1', (8, 8)),"
    " Image.new('I', (9, 9)), Image.new('F', (9, 9)), Image.new('LA', (9, 9))];"
    "attempt('process', lambda: print('CHECK', tuple(p(images=ims, return_tensors='pt')['pixel_values'].shape) == (10, 3, 32, 32)))",
    returned(),
)
api(
    "processor: a 16-bit image is scaled like its 8-bit twin",
    "p = AutoProcessor.from_pretrained('model'); a = np.full((32, 32), 40000, dtype=np.uint16);"
    "x16 = p(images=[Image.fromarray(a)], return_tensors='pt')['pixel_values'];"
    "x8 = p(images=[Image.fromarray((a >> 8).astype(np.uint8))], return_tensors='pt')['pixel_values'];"
    "attempt('compare', lambda: print('CHECK', bool((x16 - x8).abs().max() < 0.05), float((x16 - x8).abs().max())))",
    returned(),
)
api(
    "processor and model: a batch of one",
    "m = MamoForImageTextRetrieval.from_pretrained('model').eval(); p = AutoProcessor.from_pretrained('model');"
    "x = p(images=Image.new('RGB', (32, 32)), text='a red circle', return_tensors='pt');"
    "attempt('forward', lambda: print('CHECK', tuple(m(**x).logits_per_image.shape) == (1, 1)))",
    returned(),
)
api(
    "processor: empty text ''",
    "p = AutoProcessor.from_pretrained('model'); m = MamoModel.from_pretrained('model').eval();"
    "attempt('empty', lambda: m.get_text_features(**p(text=[''], return_tensors='pt')).pooler_output.shape)",
    lambda r: None if "Traceback" not in r.out else "traceback",
)
api(
    "processor: an empty list of texts",
    "p = AutoProcessor.from_pretrained('model'); attempt('empty', lambda: p(text=[], return_tensors='pt'))",
    lambda r: None if "Traceback" not in r.out and ("RAISED" in r.out or "RETURNED" in r.out) else "traceback",
)
api(
    "processor: neither images nor text",
    "p = AutoProcessor.from_pretrained('model'); attempt('nothing', lambda: p(return_tensors='pt'))",
    raised("ValueError"),
)
api(
    "text longer than max positions, default call, then a forward",
    "p = AutoProcessor.from_pretrained('model'); m = MamoModel.from_pretrained('model').eval();"
    "x = p(images=[Image.new('RGB', (32, 32))], text=['red ' * 5000], return_tensors='pt');"
    "attempt('forward', lambda: print('CHECK', x['input_ids'].shape[1] <= m.config.text_config.max_position_embeddings,"
    " tuple(m(**x).logits_per_image.shape)))",
    returned(),
)
api(
    "text longer than max positions with truncation=False",
    "p = AutoProcessor.from_pretrained('model'); m = MamoModel.from_pretrained('model').eval();"
    "attempt('forward', lambda: m(**p(images=[Image.new('RGB', (32, 32))], text=['red ' * 5000], truncation=False, "
    "return_tensors='pt')))",
    raised("ValueError", pattern="position"),
)
api(
    "input_ids longer than max positions built by hand",
    "m = MamoModel.from_pretrained('model').eval(); n = m.config.text_config.max_position_embeddings + 10;"
    "attempt('text', lambda: m.get_text_features(input_ids=torch.ones(1, n, dtype=torch.long)))",
    raised("ValueError", pattern="position"),
)
api(
    "input_ids beyond the vocabulary",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('text', lambda: m.get_text_features(input_ids=torch.tensor([[2, 10**6, 3]])))",
    raised("ValueError", "IndexError", pattern="vocab"),
)
api(
    "model.generate on a MAMO model",
    "m = MamoForPreTraining.from_pretrained('model');"
    "attempt('generate', lambda: m.generate(input_ids=torch.tensor([[2, 5, 3]])))",
    raised("AttributeError", "TypeError", "ValueError", pattern="generat"),
)
api(
    "save_pretrained into a file path",
    "m = MamoModel.from_pretrained('model'); open('afile', 'w').write('keep me');"
    "attempt('save', lambda: m.save_pretrained('afile')); print('CHECK', open('afile').read() == 'keep me')",
    lambda r: raised()(r) or (None if "CHECK True" in r.out else "the user's file was changed"),
)
api(
    "processor.save_pretrained into a file path",
    "p = AutoProcessor.from_pretrained('model'); open('afile', 'w').write('keep me');"
    "attempt('save', lambda: p.save_pretrained('afile')); print('CHECK', open('afile').read() == 'keep me')",
    lambda r: raised()(r) or (None if "CHECK True" in r.out else "the user's file was changed"),
)
api(
    "save_pretrained into a read-only folder (a read-only tmpfs)",
    "m = MamoModel.from_pretrained('model'); attempt('save', lambda: m.save_pretrained('ro/x'))",
    raised("PermissionError", "OSError"),
    setup=readonly("ro"),
)
api(
    "pixel_values with 1 channel",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('features', lambda: m.get_image_features(pixel_values=torch.zeros(1, 1, 32, 32)))",
    raised("ValueError", pattern="channel"),
)
api(
    "pixel_values with 4 channels through the full forward",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('forward', lambda: m(pixel_values=torch.zeros(1, 4, 32, 32), input_ids=torch.tensor([[2, 5, 3]])))",
    raised("ValueError", pattern="channel"),
)
api(
    "pixel_values of another size (48 px for a 32 px model)",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('features', lambda: m.get_image_features(pixel_values=torch.zeros(1, 3, 48, 48)))",
    lambda r: None if "Traceback" not in r.out and ("ValueError" in r.out or "RETURNED" in r.out) else "unclear",
)
api(
    "pixel_values not divisible by the patch size (30 px)",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('features', lambda: m.get_image_features(pixel_values=torch.zeros(1, 3, 30, 30)))",
    raised("ValueError"),
)
api(
    "pixel_values without the batch dimension",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('features', lambda: m.get_image_features(pixel_values=torch.zeros(3, 32, 32)))",
    raised("ValueError"),
)
api(
    "pixel_values as uint8",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('features', lambda: m.get_image_features(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.uint8)))",
    raised("ValueError", "TypeError", pattern="float"),
)
api(
    "images and texts of different batch sizes in ITM",
    "m = MamoForImageTextRetrieval.from_pretrained('model').eval();"
    "attempt('itm', lambda: m(pixel_values=torch.zeros(2, 3, 32, 32), input_ids=torch.tensor([[2, 5, 3]] * 3), "
    "return_loss=False).logits_per_image.shape)",
    lambda r: None if "RAISED itm ValueError" in r.out or "torch.Size([2, 3])" in r.out else "unclear",
)
api(
    "attention_mask of all zeros",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('text', lambda: print('CHECK', torch.isfinite(m.get_text_features(input_ids=torch.tensor([[2, 5, 3]]), "
    "attention_mask=torch.zeros(1, 3, dtype=torch.long)).pooler_output).all().item()))",
    lambda r: None if "Traceback" not in r.out and "CHECK False" not in r.out else "non-finite features",
)
api(
    "input_ids of length 0",
    "m = MamoModel.from_pretrained('model').eval();"
    "attempt('text', lambda: m.get_text_features(input_ids=torch.zeros(1, 0, dtype=torch.long)))",
    raised("ValueError"),
)
api(
    "MamoConfig with a wrong type (hidden_size='abc')",
    "attempt('config', lambda: MamoModel(MamoConfig(text_config={'hidden_size': 'abc'})))",
    raised("ValueError", "TypeError", "StrictDataclassFieldValidationError", pattern="hidden_size"),
)
api(
    "from_pretrained of a pre-training folder as a VQA head, top_answers without an answer list",
    "m = MamoForQuestionAnswering.from_pretrained('model').eval();"
    "attempt('top', lambda: m.top_answers(torch.zeros(1, m.config.num_labels if hasattr(m.config, 'num_labels') else 2), k=3))",
    lambda r: None if "Traceback" not in r.out else "traceback",
)
api(
    "processor with a file path string instead of an image",
    "p = AutoProcessor.from_pretrained('model'); Image.new('RGB', (8, 8)).save('x.png');"
    "attempt('path', lambda: p(images='x.png', return_tensors='pt')['pixel_values'].shape)",
    lambda r: None if "Traceback" not in r.out else "traceback",
)
api(
    "processor with numpy HWC float images in [0, 1]",
    "p = AutoProcessor.from_pretrained('model');"
    "a = p(images=[np.ones((32, 32, 3), dtype=np.float32)], return_tensors='pt')['pixel_values'];"
    "b = p(images=[Image.new('RGB', (32, 32), (255, 255, 255))], return_tensors='pt')['pixel_values'];"
    "attempt('compare', lambda: print('CHECK', bool((a - b).abs().max() < 0.05), float((a - b).abs().max())))",
    returned(),
)


# ================================================================ driver


def run_case(index, c: Case):
    folder = CASES_DIR / f"{index:03d}"
    if folder.exists():
        subprocess.run(["chmod", "-R", "u+rwx", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result = Result(folder=folder)
    if c.setup:
        c.setup(folder)
    start = time.time()
    for step, command in enumerate(c.steps):
        out = folder / f"out{step}.txt"
        with open(out, "w") as handle:
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=folder,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env(),
                start_new_session=True,
            )
            thread = None
            if c.during and step == getattr(c, "during_step", 0):
                thread = threading.Thread(target=c.during, args=(process, folder, out), daemon=True)
                thread.start()
            try:
                rc = process.wait(timeout=c.timeout)
            except subprocess.TimeoutExpired:
                killpg(process, signal.SIGKILL)
                process.wait()
                rc = 124
            if thread:
                thread.join(timeout=5)
                result.note = getattr(c.during, "note", "")
        result.rcs.append(rc)
        result.outs.append(out.read_text(errors="replace"))
    elapsed = time.time() - start
    if any(rc == 124 for rc in result.rcs):
        verdict, why = "FAIL", "hang (timeout)"
    elif "Traceback (most recent call last)" in result.all and not c.allow_traceback:
        verdict, why = "FAIL", "traceback"
    else:
        why = c.check(result) if c.check else None
        verdict = "FAIL" if why else "ok"
    for mount in reversed(MOUNTS):
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    MOUNTS.clear()
    subprocess.run(["chmod", "-R", "u+rwx", str(folder)], capture_output=True)
    return result, verdict, why or "", elapsed


def tail(text, n=4):
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    lines = [line for line in lines if "it/s]" not in line and "step/s" not in line]
    return " ⏎ ".join(line.strip()[:220] for line in lines[-n:])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--output", default=str(HERE / "results.md"))
    parser.add_argument("--ids", default=None, help="comma-separated case numbers to run")
    parser.add_argument("--merge", default=None, help="a rows.jsonl of an earlier run: its rows for cases not run")
    options = parser.parse_args()
    if options.list:
        for i, c in enumerate(CASES, 1):
            print(i, c.category, c.name)
        return
    build_fixtures()
    rows, counts = [], {}
    selected = [
        (i, c) for i, c in enumerate(CASES, 1) if not options.only or options.only in f"{i}:{c.category}:{c.name}"
    ]
    if options.ids:
        wanted = {int(i) for i in options.ids.split(",")}
        selected = [(i, c) for i, c in selected if i in wanted]
    for i, c in selected:
        result, verdict, why, elapsed = run_case(i, c)
        counts.setdefault(c.category, [0, 0])[verdict == "FAIL"] += 1
        print(
            f"{i:3d} {verdict:4s} {elapsed:5.1f}s [{c.category}] {c.name} :: {why} :: rc={result.rcs} {result.note}",
            flush=True,
        )
        if verdict == "FAIL" or os.environ.get("VERBOSE"):
            print("      " + tail(result.all, 8), flush=True)
        rows.append(row_of(i, c, result, verdict, why))
        with open(Path(options.output).with_suffix(".jsonl"), "a") as handle:
            handle.write(json.dumps(rows[-1]) + "\n")
    if options.merge:
        done = {row["id"] for row in rows}
        rows += [row for row in map(json.loads, open(options.merge)) if row["id"] not in done]
    rows.sort(key=lambda row: row["id"])
    write_table(rows, options.output)


def row_of(i, c, result, verdict, why):
    command = " ; ".join(c.steps).replace(CLI, "mamo-hf").replace(PY, "python").replace("|", "\\|")
    if len(command) > 300:
        command = command[:300] + "…"
    mark = (
        f"**FAIL**: {why}"
        if verdict == "FAIL"
        else "ok" + (f" ({result.note.strip()})" if result.note.strip() else "")
    )
    return {
        "id": i,
        "category": c.category,
        "name": c.name,
        "command": command,
        "rcs": result.rcs,
        "last": tail(result.all, 3).replace("|", "\\|"),
        "verdict": verdict,
        "mark": mark.replace("|", "/"),
        "when": time.strftime("%H:%M"),
    }


def write_table(rows, output):
    counts = {}
    for row in rows:
        counts.setdefault(row["category"], [0, 0])[row["verdict"] == "FAIL"] += 1
    lines = [
        "# Issue 29 adversarial battery",
        "",
        f"`python benchmarks/battery_issue29.py` (repository {REPO}, "
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC; one case at a time).",
        "",
        "| category | cases | ok | FAIL |",
        "|---|---|---|---|",
    ]
    for category, (ok, fail) in counts.items():
        lines.append(f"| {category} | {ok + fail} | {ok} | {fail} |")
    total_ok = sum(v[0] for v in counts.values())
    total_fail = sum(v[1] for v in counts.values())
    lines += [
        f"| all | {total_ok + total_fail} | {total_ok} | {total_fail} |",
        "",
        "| # | category | case | command | exit | last lines | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['id']} | {row['category']} | {row['name']} | `{row['command']}` | {row['rcs']} | "
            f"{row['last']} | {row['mark']} |"
        )
    Path(output).write_text("\n".join(lines) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
