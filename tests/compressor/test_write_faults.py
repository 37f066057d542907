"""The real compressor (``python -m compressor onnx`` on the tiny embedder) killed with SIGKILL at chosen
points of its repository write, or stopped by a full disk: the repository tree stays byte-identical (or,
killed after the swap, holds the complete new variant), and the next run completes and removes what the
dead one left in staging.

The points are exact, not raced: the child runs the real CLI under a Python audit hook
(``sys.addaudithook``) that, at the n-th matching event of the write (the staging directory created, a
file opened for writing, the chmod before the swap, the clean-up after it), sends the process SIGKILL, or
sets RLIMIT_FSIZE (what ``prlimit --fsize`` sets) so that the writes after that point fail with EFBIG as
on a full disk. Nothing in the compressor is replaced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compressor.repository import parse_config_text, staging_root
from tests.compressor.conftest import tree_digest
from tests.fixtures.tinyrepo import VOCAB_SIZE, embedder_model
from varigate.contract.card import read_card

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import os, resource, signal, sys
event, match, nth, action = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
match = match.replace("{pid}", str(os.getpid()))
seen = 0
def hook(name, args):
    global seen
    if name == event and any(all(m in str(a) for m in match.split("&&")) for a in args):
        seen += 1
        if seen == nth:
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(action), int(action)))
if event != "none":
    sys.addaudithook(hook)
from compressor.cli import main
sys.exit(main(sys.argv[5:]))
"""
STAGE = "tiny.fp32.pid{pid}."  # this run's staging directory for tiny.fp32 (and its files)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny fp32 embedder and evaluation inputs, and a repository built from them (fp32 + int8)."""
    tmp = tmp_path_factory.mktemp("source")
    onnx.save(embedder_model("fp32"), tmp / "tiny.onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB_SIZE, size=(16, 6)).astype(np.int64)
    np.savez(tmp / "inputs.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    done = compress(tmp, tmp / "built", ["--variants", "fp32", "int8"])
    assert done.returncode == 0, done.stderr
    return tmp


def compress(
    source: Path, repo: Path, extra: list[str], fault: tuple[str, str, int, str] = ("none", "", 0, "")
) -> subprocess.CompletedProcess[str]:
    argv = ["onnx", "--name", "tiny", "--onnx", str(source / "tiny.onnx"), "--inputs"]
    argv += [str(source / "inputs.npz")]
    argv += ["--fast", "--quiet", "--out", str(repo), "--plot-dir", str(repo.parent / "plots"), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", CHILD, *(str(f) for f in fault), *argv]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def fresh_copy(source: Path, tmp: Path) -> Path:
    repo = tmp / "model_repository"
    shutil.copytree(source / "built", repo)
    return repo


def assert_complete(model_dir: Path) -> None:
    """A whole variant: its config parses, its card reads, onnxruntime loads its model."""
    assert parse_config_text((model_dir / "config.pbtxt").read_text()).name == model_dir.name
    assert read_card(model_dir).model_name == model_dir.name
    ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


# (audit event, what one of its arguments contains ("&&": all of them), which occurrence); a hook runs
# before the operation it names: the empty staging directory exists, the model is staged, everything is
# staged and fsynced, the build report is staged and fsynced (variants up to date: only it is written)
BEFORE_SWAP = {
    "staging_created": ("os.mkdir", STAGE + "&&/1", 1, ["--force"]),
    "model_staged": ("open", STAGE + "&&/config.pbtxt", 1, ["--force"]),
    "all_staged": ("os.chmod", STAGE, 1, ["--force"]),
    "report_staged": ("os.rename", "varigate_build.json.pid{pid}.", 1, []),
}


def test_sigkill_before_the_swap_leaves_the_repository_byte_identical(source: Path, tmp_path: Path) -> None:
    repo = fresh_copy(source, tmp_path)
    before = tree_digest(repo)
    for point, (event, match, nth, extra) in BEFORE_SWAP.items():
        killed = compress(source, repo, ["--variants", "fp32", *extra], (event, match, nth, "kill"))
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
        assert tree_digest(repo) == before, point
        # outside the repository: only this run's leftover (each run removes those of dead writers first)
        left = [p.name for p in staging_root(repo).iterdir()]
        assert len(left) == 1 and ".pid" in left[0], (point, left)
    again = compress(source, repo, ["--variants", "fp32"])
    assert again.returncode == 0, again.stderr
    assert not staging_root(repo).exists()  # every dead writer's leftover removed, the empty root too
    assert_complete(repo / "tiny.fp32")


def test_sigkill_after_the_swap_leaves_the_new_variant_whole(source: Path, tmp_path: Path) -> None:
    repo = fresh_copy(source, tmp_path)
    old_int8 = tree_digest(repo / "tiny.int8")
    old_model = (repo / "tiny.fp32" / "1" / "model.onnx").read_bytes()
    killed = compress(source, repo, ["--variants", "fp32", "--force"], ("shutil.rmtree", STAGE, 1, "kill"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_complete(repo / "tiny.fp32")  # the new one, whole
    assert tree_digest(repo / "tiny.int8") == old_int8
    assert sorted(p.name for p in repo.iterdir()) == ["tiny.fp32", "tiny.int8", "varigate_build.json"]
    (left,) = staging_root(repo).iterdir()  # the old variant, swapped out, not yet removed
    assert (left / "1" / "model.onnx").read_bytes() == old_model
    again = compress(source, repo, ["--variants", "fp32"])
    assert again.returncode == 0, again.stderr
    assert not staging_root(repo).exists()


# (when the file-size limit starts, the limit in bytes): the model copy fails; the card write fails half way
DISK_FULL = {
    "model_copy": ("os.mkdir", STAGE, 1, 512),
    "card_write": ("open", STAGE + "&&/config.pbtxt", 1, 1000),
}


@pytest.mark.parametrize("point", sorted(DISK_FULL))
def test_disk_full_mid_write_leaves_the_repository_byte_identical(
    source: Path, tmp_path: Path, point: str
) -> None:
    event, match, nth, limit = DISK_FULL[point]
    repo = fresh_copy(source, tmp_path)
    before = tree_digest(repo)
    failed = compress(source, repo, ["--variants", "fp32", "--force"], (event, match, nth, str(limit)))
    assert failed.returncode == 1, failed.stderr
    assert "varigate compress: error: cannot write variant 'tiny.fp32'" in failed.stderr
    assert "File too large" in failed.stderr
    assert tree_digest(repo) == before
    assert not staging_root(repo).exists()  # the failed write cleaned up after itself


def test_a_build_killed_between_variants_resumes_where_it_stopped(source: Path, tmp_path: Path) -> None:
    """What a Ctrl-C of the main job's background build leaves: the next run keeps what landed (not even
    its card is rewritten) and builds only what is missing."""
    repo = tmp_path / "model_repository"
    int8_staged = ("os.mkdir", "tiny.int8.pid{pid}.&&/1", 1, "kill")  # fp32 landed, int8 being staged
    killed = compress(source, repo, ["--variants", "fp32", "int8"], int8_staged)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_complete(repo / "tiny.fp32")
    assert not (repo / "tiny.int8").exists()
    landed = tree_digest(repo / "tiny.fp32")
    again = compress(source, repo, ["--variants", "fp32", "int8"])
    assert again.returncode == 0, again.stderr
    assert tree_digest(repo / "tiny.fp32") == landed  # skipped, byte for byte
    assert_complete(repo / "tiny.int8")
    assert not staging_root(repo).exists()
