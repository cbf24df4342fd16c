"""The installed layout: a production install holds the runtime only, under few names."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_pip_install_holds_only_the_runtime_names(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("gatewayflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"gatewayflow", "workflows", "activities", "control", "starter", "worker.py"}
    assert not [n for n in names if "kube_emulator" in n or "gatewayflow_dev" in n]


def test_the_image_build_context_leaves_the_dev_stack_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"devstack", "bench", "tests"} <= set(ignored)
