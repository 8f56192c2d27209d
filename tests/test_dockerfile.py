"""The steps image: official slim Python base, non-root, pinned dependencies, every step present.

`python -m tests.test_dockerfile --write-lock` rewrites requirements.lock from the installed
versions of the core dependencies (pyproject's [project] dependencies and what they need).
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from engine import names

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
OFFICIAL_SLIM = re.compile(r"^(?:docker\.io/)?(?:library/)?python:3\.11(?:\.\d+)?-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last:]


def core_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        found = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert found, f"requirements.lock: {line!r} is not an exact pin"
        pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def template_steps() -> set[str]:
    """`steps.<name>` modules the generated WorkflowTemplates run."""
    found = set()
    for path in sorted((ROOT / "build" / "pipelines").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for template in ((document or {}).get("spec") or {}).get("templates") or []:
                command = (template.get("container") or {}).get("command") or []
                if command[:2] == ["python", "-m"] and len(command) == 3:
                    found.add(command[2])
    return found


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_base_image_is_the_official_python_slim(parsed):
    bases = [args.split()[0] for keyword, args in parsed if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        assert OFFICIAL_SLIM.match(base), f"{base} is not the official python:3.11-slim image"


def test_runs_as_a_non_root_user(parsed):
    users = [args for keyword, args in final_stage(parsed) if keyword == "USER"]
    assert users, "no USER in the final stage: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and user.isdigit(), f"USER {users[-1]} (numeric, non-root, for runAsNonRoot)"
    # The templates set runAsNonRoot and no UID (OpenShift's restricted-v2 assigns one): on Kubernetes the
    # kubelet runs the steps as this USER, and can check runAsNonRoot only against a numeric one.
    assert int(user) == 65532 and group.isdigit() and int(group) != 0, f"USER {users[-1]}"
    env = " ".join(args for keyword, args in final_stage(parsed) if keyword == "ENV")
    assert re.search(r"\bHOME=/tmp\b", env), "HOME must be /tmp, the emptyDir every step mounts (any UID can write it)"


def test_no_entrypoint_or_cmd_that_would_change_the_templates_command(parsed):
    # The templates set command: ["python", "-m", "steps.<name>"]; an ENTRYPOINT would prefix it.
    stage = final_stage(parsed)
    assert not [a for k, a in stage if k == "ENTRYPOINT"]
    assert not [a for k, a in stage if k == "CMD"]


def test_copied_sources_exist_and_cover_the_packages(parsed):
    copied = set()
    for keyword, args in parsed:
        if keyword == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source)
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.removesuffix("*") for p in patterns}
    assert packages <= copied, f"pip install . needs every package: missing {packages - copied}"
    assert "requirements.lock" in copied and "pyproject.toml" in copied


def test_dependencies_come_from_the_lock_and_the_project_adds_none(parsed):
    runs = " && ".join(args for keyword, args in parsed if keyword == "RUN")
    assert "-r requirements.lock" in runs
    assert re.search(r"pip install (?:[^&]* )?--no-deps \.", runs), "install the project with --no-deps"


def test_lock_pins_every_core_dependency_within_pyproject():
    pins = lock_pins()
    for requirement in core_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock does not pin {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )
    for extra_only in ("moto", "pytest", "pytest-xdist", "jsonschema", "lupa", "gjson"):
        assert canonicalize_name(extra_only) not in pins, f"{extra_only} is not a steps-image dependency"


def test_lock_is_closed_over_what_its_pins_require():
    pins = lock_pins()
    for name, version in pins.items():
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        if dist.version != version:
            continue  # another version installed here; its requirements may differ
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in pins, f"{name} needs {requirement.name}, not in the lock"


@pytest.mark.parametrize("module", sorted(template_steps() | {f"steps.{s}" for s in names.STEPS}))
def test_every_step_the_templates_run_imports_with_a_main(module):
    assert re.fullmatch(r"steps\.[a-z_]+", module)
    loaded = importlib.import_module(module)
    assert callable(getattr(loaded, "main", None)), f"{module} has no main()"
    assert (loaded.__doc__ or "").strip(), f"{module} has no docstring"


def test_templates_run_only_known_steps():
    used = template_steps()
    assert used, "build/pipelines has no step templates"
    assert used <= {f"steps.{s}" for s in names.STEPS} | {"steps.doctor"}  # + the preflight, WorkflowTemplate falco-doctor


# --- regenerate the lock ---------------------------------------------------------------------------


def closure() -> dict[str, str]:
    seen: dict[str, str] = {}
    todo = core_requirements()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        dist = distribution(requirement.name)
        seen[name] = dist.version
        todo.extend(Requirement(r) for r in dist.requires or [])
    return dict(sorted(seen.items()))


def write_lock() -> None:
    header = (
        "# Exact versions of the steps image's dependencies (pyproject [project] dependencies and what\n"
        "# they need), as installed in a tested environment. Regenerate: python -m tests.test_dockerfile --write-lock\n"
    )
    LOCK.write_text(header + "".join(f"{name}=={version}\n" for name, version in closure().items()))
    print(json.dumps(closure(), indent=1))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-lock"]:
        write_lock()
    else:
        sys.exit("usage: python -m tests.test_dockerfile --write-lock")
