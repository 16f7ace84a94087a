"""Environment modules a plan asks for, loaded with the real Environment
Modules (Debian's environment-modules, installed by scripts/bootstrap) and
modulefiles written here: by hpcwizard on the login node, and by the shell
function every job script runs first."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpcwizard.prepare.modules import ModuleError, module_environment, modules_shell_function
from hpcwizard.shell import LocalRunner

MODULEFILE = """#%Module1.0
prepend-path PATH {bin}
setenv HPCW_TOOLCHAIN {version}
"""


@pytest.fixture
def modulepath(tmp_path: Path) -> Path:
    """A module tree with toolchain/1.0 and toolchain/2.0, each putting its own bin first on PATH."""
    root = tmp_path / "modulefiles"
    for version in ("1.0", "2.0"):
        bin_dir = tmp_path / f"toolchain-{version}" / "bin"
        bin_dir.mkdir(parents=True)
        (root / "toolchain").mkdir(parents=True, exist_ok=True)
        (root / "toolchain" / version).write_text(MODULEFILE.format(bin=bin_dir, version=version))
    return root


def test_the_environment_after_module_load_is_what_builds_run_in(modulepath, tmp_path):
    runner = LocalRunner(extra_env={"MODULEPATH": str(modulepath)})
    env = module_environment(["toolchain/2.0"], runner)
    assert env["HPCW_TOOLCHAIN"] == "2.0"
    assert env["PATH"].split(":")[0] == str(tmp_path / "toolchain-2.0" / "bin")
    assert "toolchain/2.0" in env.get("LOADEDMODULES", "").split(":")
    assert not any(name.startswith("BASH_FUNC_") for name in env)


def test_a_module_that_does_not_load_is_one_line_with_modules_own_words(modulepath):
    runner = LocalRunner(extra_env={"MODULEPATH": str(modulepath)})
    with pytest.raises(ModuleError) as caught:
        module_environment(["toolchain/2.0", "nosuch/1"], runner, where="login.example.org")
    line = caught.value.one_line()
    assert "\n" not in line
    assert line.startswith("module load toolchain/2.0 nosuch/1 failed on login.example.org: ")
    assert "nosuch/1" in line.split(": ", 1)[1] and "module avail" in line


JOB_PRELUDE = """set -Eeuo pipefail
log() { printf '[log] %s\\n' "$*"; }
trap 'log "ERROR: line $LINENO exited with status $?" >&2' ERR
"""


def test_the_job_function_loads_under_set_eu_and_an_err_trap_and_gives_them_back(modulepath, tmp_path):
    """A batch job's bash (no login shell: no `module` yet), with the job
    scripts' strict settings: the module loads, nothing spurious is logged
    as an error, and -e, -u and the ERR trap hold again afterwards."""
    program = (JOB_PRELUDE + modules_shell_function()
               + 'hpcw_modules_load toolchain/1.0\n'
               + 'printf "%s %s %s\\n" "$HPCW_TOOLCHAIN" "$-" "$(trap -p ERR | cut -c1-7)"\n'
               + 'hpcw_modules_load nosuch/1 || echo "status $?"\n'
               + 'echo "$UNSET_VARIABLE"\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODULEPATH": str(modulepath)}
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60)
    lines = result.stdout.splitlines()
    value, flags, trap = lines[0].split(" ", 2)
    assert value == "1.0" and "e" in flags and "u" in flags and trap == "trap --"
    assert lines[1] == "status 1"
    assert "[log] ERROR" not in result.stdout + result.stderr.replace("ERROR: Unable to locate", "")
    # set -u is back: the unset variable ends the script.
    assert result.returncode != 0 and "UNSET_VARIABLE: unbound variable" in result.stderr


def test_the_check_loads_the_plans_modules_on_the_login_node_first(modulepath, tmp_path):
    """The modules row, and the Python a venv would be made with found after them."""
    from hpcwizard.prepare.check import check_environment_python, check_modules
    from hpcwizard.project.plan import plan_from_dict
    from hpcwizard.project.recipe import get_recipe
    from hpcwizard.project.resolved import resolve

    # toolchain/2.0 brings a python3.12 of its own (pyenv's, linked into its bin): newer than this PATH's.
    python312 = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.12*/bin/python3.12"))
    if not python312:
        pytest.skip("no Python 3.12 in pyenv here to stand in for a module's Python")
    (tmp_path / "toolchain-2.0" / "bin" / "python3.12").symlink_to(python312[-1])
    runner = LocalRunner(extra_env={"MODULEPATH": str(modulepath)})
    data = get_recipe("fff-vdi").default_plan(tmp_path / "p", download="login").to_dict()
    loaded = resolve(plan_from_dict({**data, "modules": ["toolchain/2.0"]}))
    [row] = check_modules(loaded, runner, "this login node")
    assert (row.level.value, row.name, row.message) == ("ok", "module load", "toolchain/2.0: loads on this login node")
    [python] = check_environment_python(loaded, runner)
    assert python.level.value == "ok" and str(tmp_path / "toolchain-2.0" / "bin" / "python3.12") in python.message, \
        python.message
    [refused] = check_modules(resolve(plan_from_dict({**data, "modules": ["nosuch/9"]})), runner, "this login node")
    assert refused.level.value == "block" and refused.message.startswith("module load nosuch/9 failed on this login node")
    assert check_modules(resolve(plan_from_dict(data)), runner, "this login node") == []
    [without] = check_environment_python(resolve(plan_from_dict(data)), runner)
    assert "toolchain-2.0" not in without.message
