"""What the Comfy Registry will see: `comfy node validate` (comfy-cli from PyPI) on a copy of the tree, and
the entry its parser builds from pyproject.toml. Run with the Python of a venv that has comfy-cli:

    python .ci/registry_check.py

Fails (exit 1) on any finding of the validator's security pass (ruff S102 exec, S307 eval, E702 two
statements on a line: "this will be an error soon"), on an entry with no dependencies or one that differs
from requirements.txt, or on a licence the parser does not read.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def requirements() -> list:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def copy_tree(dest: Path) -> None:
    """The files a user's clone has: tracked, plus new files git does not ignore (the validator scans the
    whole folder; it does not read .comfyignore)."""
    names = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def main() -> int:
    from comfy_cli.registry.config_parser import extract_node_configuration

    problems = []
    with tempfile.TemporaryDirectory(prefix="clipasso-registry-") as tmp:
        tree = Path(tmp) / "comfyui-clipasso"
        tree.mkdir()
        copy_tree(tree)
        comfy = Path(sys.executable).with_name("comfy")
        run = subprocess.run(
            [str(comfy), "--skip-prompt", "--no-enable-telemetry", "node", "validate"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = run.stdout + run.stderr
        print(output.strip())
        if run.returncode != 0:
            problems.append(f"comfy node validate exited {run.returncode}")
        if "warning" in output.lower() or "All validation checks passed" not in output:
            problems.append("comfy node validate reported findings (see above)")
        config = extract_node_configuration(str(tree / "pyproject.toml"))
    if config is None:
        problems.append("comfy-cli could not parse pyproject.toml")
    else:
        project = config.project
        if list(project.dependencies) != requirements():
            problems.append(
                f"the Registry entry lists dependencies {list(project.dependencies)}, requirements.txt {requirements()}"
            )
        if not (project.license.text or project.license.file):
            problems.append("the Registry entry has no licence")
        print(
            f"Registry entry: {project.name} {project.version}, licence "
            f"{project.license.text or project.license.file!r}, {len(project.dependencies)} dependencies, "
            f"ComfyUI {config.project.supported_comfyui_version or 'any'}"
        )
    for problem in problems:
        print(f"registry check: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
