"""Every rule runs in a conda environment that lists every package its code imports: the rule's
script and, transitively, every visdecode module it reaches (imports inside functions
included), read with `ast`, mapped to conda-forge package names."""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "visdecode"

# import name -> conda-forge package names that provide it
CONDA = {
    "numpy": {"numpy"}, "scipy": {"scipy"}, "h5py": {"h5py"}, "yaml": {"pyyaml"},
    "tqdm": {"tqdm"}, "sklearn": {"scikit-learn"}, "threadpoolctl": {"threadpoolctl"},
    "mne": {"mne", "mne-base"}, "torch": {"pytorch"}, "torchvision": {"torchvision"},
    "timm": {"timm"}, "open_clip": {"open-clip-torch"}, "PIL": {"pillow"},
    "pandas": {"pandas"}, "matplotlib": {"matplotlib", "matplotlib-base"},
    "seaborn": {"seaborn", "seaborn-base"}, "statsmodels": {"statsmodels"},
    "pooch": {"pooch"}, "requests": {"requests"}, "safetensors": {"safetensors"},
    "snakemake": {"snakemake"},
}  # fmt: skip
# imported only where an optional yardstick or tool is present, never on a rule's path
OPTIONAL = {"dreamsim", "peft"}


def rules() -> dict[str, dict]:
    """rule name -> {conda, script} from rules/**/*.smk; a rule defined per data set (`rule:`
    with `name: rule_name("<step>", ...)`) as `<step>_<data set>` of its file."""
    out = {}
    for smk in sorted((REPO / "rules").rglob("*.smk")):
        for block in re.split(r"\n(?=\s*rule(?: \w+)?:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            step = re.match(r'\s*rule:\s*\n\s*name:\s*\n\s*rule_name\(\s*f?"(\w+)', block)
            if not m and not step:
                continue
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            name = m.group(1) if m else f"{step.group(1)}_<{smk.stem}>"
            out[name] = {
                "conda": (smk.parent / conda.group(1)).resolve() if conda else None,
                "script": (smk.parent / script.group(1)).resolve() if script else None,
                "smk": smk.name,
            }
    return out


def imports(path: Path) -> set[str]:
    """Top-level names of every import in a file, and visdecode modules as 'visdecode.x.y'."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.add(a.name if a.name.startswith("visdecode.") else a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "visdecode" or node.module.startswith("visdecode."):
                # `from visdecode.a import b`: module visdecode.a, and b if it is a module
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}
            else:
                names.add(node.module.split(".")[0])
    return names


def third_party(script: Path) -> set[str]:
    seen, todo, found = set(), [script], set()
    while todo:
        path = todo.pop()
        for name in imports(path):
            if name.startswith("visdecode."):
                base = SRC / name.split(".", 1)[1].replace(".", "/")
                module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
                if module.exists() and module not in seen:
                    seen.add(module)
                    todo.append(module)
            elif name not in sys.stdlib_module_names and name not in ("visdecode", "__future__"):
                found.add(name)
    return found - OPTIONAL


def env_packages(path: Path) -> tuple[set[str], list]:
    """Conda package names (without versions) and pip entries of an environment file."""
    env = yaml.safe_load(path.read_text())
    names, pip = set(), []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
        else:
            names.add(re.split(r"[=<>! ]", dep, maxsplit=1)[0])
    return names, pip


RULES = rules()
SCRIPTED = sorted(name for name, r in RULES.items() if r["script"])


def test_rules_found():
    assert {"things_eeg2_preprocess", "things_meg_prepare", "embed", "train",
            "things_eeg2_import_release", "synth_meg_<things_meg>"} <= set(RULES)  # fmt: skip
    assert len(SCRIPTED) >= 20


@pytest.mark.parametrize("rule", SCRIPTED)
def test_rule_env_lists_every_import(rule):
    r = RULES[rule]
    assert r["conda"] is not None, f"rule {rule} ({r['smk']}) has no conda: directive"
    assert r["conda"].is_file(), f"rule {rule}: {r['conda']} does not exist"
    packages, pip = env_packages(r["conda"])
    env = yaml.safe_load(r["conda"].read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    assert "python" in packages and not pip
    needed = third_party(r["script"])
    unknown = needed - set(CONDA)
    assert not unknown, f"rule {rule}: imports {sorted(unknown)} with no conda mapping here"
    missing = {name for name in needed if not (CONDA[name] & packages)}
    assert not missing, f"rule {rule}: {r['conda'].name} lacks {sorted(missing)}"


@pytest.mark.parametrize("path", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_holds_nothing_its_rules_do_not_import(path):
    packages, _ = env_packages(path)
    used = set()
    for r in RULES.values():
        if r["conda"] == path.resolve() and r["script"]:
            used |= {pkg for name in third_party(r["script"]) for pkg in CONDA[name] & packages}
    assert packages - {"python"} == used, (
        f"{path.name}: unused {sorted(packages - used - {'python'})}"
    )


def test_the_package_is_importable_from_the_scripts_folder():
    """Snakemake appends a local script's folder to sys.path; the package is linked there, so
    a conda environment needs only the dependencies."""
    link = REPO / "workflow" / "scripts" / "visdecode"
    assert link.is_symlink() and link.resolve() == SRC.resolve()
    assert (link / "__init__.py").is_file()


@pytest.mark.parametrize("path", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_every_package(path):
    """Every package, python included, pinned to one version."""
    env = yaml.safe_load(path.read_text())
    loose = [d for d in env["dependencies"] if isinstance(d, str) and "=" not in d]
    assert not loose, f"{path.name}: unpinned {loose}"


def test_every_env_is_used():
    used = {r["conda"] for r in RULES.values() if r["conda"]}
    assert used == {p.resolve() for p in (REPO / "envs").glob("*.yaml")}


def test_the_checker_sees_imports_inside_functions(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "from visdecode.datasets.things_eeg2 import sources\ndef f():\n    import pandas\n"
    )
    found = third_party(script)
    # sources -> format (numpy) and download (requests, pooch, tqdm: inside its functions)
    assert {"pandas", "numpy", "requests", "pooch", "tqdm"} <= found
