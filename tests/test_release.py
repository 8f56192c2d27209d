"""The GitHub Actions workflows (.github/workflows): CI runs `make lint` and `make test` with ../shared
beside the project; a release pushes a multi-arch steps image with SBOM and provenance and puts its
digest in the release notes; every action is pinned by commit; the linters pass; `make build` warns
while settings.image is a tag.

The shell steps are run here with bash, as the runner runs them (`bash -e {0}`), with the values
their `${{ }}` expressions would give passed in the environment, as the steps themselves take them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI, RELEASE = WORKFLOWS / "ci.yml", WORKFLOWS / "release.yml"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as the boolean True (YAML 1.1); GitHub reads it as "on"
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(path: Path, job: str) -> list[dict]:
    return load(path)["jobs"][job]["steps"]


def step(path: Path, job: str, *, uses: str | None = None, name: str | None = None) -> dict:
    found = [s for s in steps(path, job)
             if (uses and s.get("uses", "").split("@")[0] == uses) or (name and s.get("name") == name)]
    assert len(found) == 1, f"{path.name}: {len(found)} steps {uses or name}"
    return found[0]


def run_step(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=30)


def test_ci_runs_make_lint_and_make_test_with_shared_beside_the_project():
    """.ci/run's layout: the project and ../shared side by side (standin.shared_dir), then make."""
    ci = load(CI)
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["permissions"] == {"contents": "read"}
    (job,) = ci["jobs"].values()
    checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    project = next(s["with"]["path"] for s in checkouts if "repository" not in s["with"])
    shared = next(s["with"] for s in checkouts if "repository" in s["with"])
    assert Path(project).parent == Path(shared["path"]).parent and Path(shared["path"]).name == "shared"
    assert all(s["with"].get("persist-credentials") is False for s in checkouts)
    runs = [(s.get("working-directory"), s["run"].strip()) for s in job["steps"] if "run" in s]
    assert (project, "make lint") in runs and (project, "make test") in runs
    python = step(CI, "test", uses="actions/setup-python")["with"]["python-version"]
    assert python == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].removeprefix(">=")


def test_ci_fails_at_once_with_a_clear_error_without_the_shared_repository(tmp_path):
    script = steps(CI, "test")[0]["run"]
    refused = run_step(script, {"SHARED_REPOSITORY": ""}, tmp_path)
    assert refused.returncode == 1 and "::error::set the repository variable SHARED_REPOSITORY" in refused.stdout
    assert run_step(script, {"SHARED_REPOSITORY": "acme/falco-response-shared"}, tmp_path).returncode == 0


@pytest.mark.parametrize("path", [CI, RELEASE], ids=lambda p: p.name)
def test_every_action_is_pinned_by_full_commit_sha_with_its_version(path):
    """A tag can be moved to other code; a commit cannot. The comment names the release (the SHAs
    were read from each action's repository: `git rev-parse vX.Y.Z^{commit}`)."""
    lines = [line.strip() for line in path.read_text().splitlines() if re.match(r"\s*(?:- )?uses:", line)]
    assert lines
    for line in lines:
        assert re.fullmatch(r"(?:- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


def test_release_permissions_are_only_what_publishing_needs():
    release = load(RELEASE)
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {}  # nothing by default; the one job asks for what it uses
    (job,) = release["jobs"].values()
    assert job["permissions"] == {"contents": "write", "packages": "write", "id-token": "write", "attestations": "write"}


def test_release_pushes_a_multi_arch_image_with_sbom_and_max_provenance():
    names = [s.get("uses", "").split("@")[0] or s.get("name") for s in steps(RELEASE, "release")]
    order = ["docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action", "docker/build-push-action"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)
    login = step(RELEASE, "release", uses="docker/login-action")["with"]
    assert login == {"registry": "ghcr.io", "username": "${{ github.actor }}", "password": "${{ secrets.GITHUB_TOKEN }}"}
    build = step(RELEASE, "release", uses="docker/build-push-action")
    options = build["with"]
    assert options["platforms"] == "linux/amd64,linux/arm64" and options["push"] is True
    assert options["provenance"] == "mode=max" and options["sbom"] is True
    assert options["tags"] == "${{ steps.meta.outputs.image }}:${{ steps.meta.outputs.version }}"
    attest = step(RELEASE, "release", name="Attest the image")["with"]
    assert attest == {"subject-name": "${{ steps.meta.outputs.image }}", "subject-digest": f"${{{{ steps.{build['id']}.outputs.digest }}}}",
                      "push-to-registry": True}


def test_release_image_name_is_lower_case_and_the_tag_must_be_the_project_version(tmp_path):
    """ghcr.io refuses upper-case repository names; a tag that is not pyproject's version fails the job."""
    script = step(RELEASE, "release", name="Version and image name")["run"]
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = tmp_path / "output"
    done = run_step(script, {"TAG": f"v{version}", "OWNER": "Acme-Sec", "GITHUB_OUTPUT": str(out)}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_text().splitlines() == [f"version={version}", "image=ghcr.io/acme-sec/falco-response-steps"]
    wrong = run_step(script, {"TAG": "v9.9.9", "OWNER": "acme", "GITHUB_OUTPUT": str(tmp_path / "o2")}, tmp_path)
    assert wrong.returncode == 1 and f"tag v9.9.9 is not pyproject.toml's version {version}" in wrong.stdout


def test_release_notes_carry_the_pushed_digest(tmp_path):
    """The notes step takes build-push-action's outputs.digest and writes the `image:` line to put in
    response.yaml and the commands that verify the SBOM, provenance and attestation; the release is
    created with those notes; no digest, no release."""
    build_id = step(RELEASE, "release", uses="docker/build-push-action")["id"]
    notes_step = step(RELEASE, "release", name="Release notes with the digest")
    assert notes_step["env"]["DIGEST"] == f"${{{{ steps.{build_id}.outputs.digest }}}}"
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "falco_argo_response-0.1.0-py3-none-any.whl").write_bytes(b"")
    image = "ghcr.io/acme/falco-response-steps"
    env = {"IMAGE": image, "VERSION": "0.1.0", "DIGEST": DIGEST, "REPOSITORY": "acme/falco-response"}
    done = run_step(notes_step["run"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    notes = (tmp_path / "release-notes.md").read_text()
    assert f"    image: {image}@{DIGEST}\n" in notes
    assert f"docker buildx imagetools inspect {image}@{DIGEST} --format '{{{{ json .Provenance }}}}'" in notes
    assert f"gh attestation verify oci://{image}@{DIGEST} --repo acme/falco-response" in notes
    assert "releases/download/v0.1.0/falco_argo_response-0.1.0-py3-none-any.whl" in notes
    publish = step(RELEASE, "release", uses="softprops/action-gh-release")["with"]
    assert publish["body_path"] == "release-notes.md" and publish["files"] == "dist/*.whl"
    (tmp_path / "release-notes.md").unlink()
    empty = run_step(notes_step["run"], {**env, "DIGEST": ""}, tmp_path)
    assert empty.returncode == 1 and "gave no digest" in empty.stdout and not (tmp_path / "release-notes.md").exists()


def test_the_cli_is_installable_as_falco_response():
    """pipx installs [project.scripts]: the README's `pipx install` gives the `falco-response` command."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"falco-response": "engine.cli:main"}


def _linter(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} not installed: `make lint` installs the lint extra (pip install -e '.[lint]')")
    return path


def test_actionlint_and_shellcheck_pass_on_the_workflows():
    done = subprocess.run([str(_linter("actionlint")), "-no-color", "-shellcheck", str(_linter("shellcheck")),
                           *map(str, sorted(WORKFLOWS.glob("*.yml")))], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_passes_on_the_dockerfile():
    done = subprocess.run([str(_linter("hadolint")), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_warns_while_the_image_is_a_tag_not_a_digest(tmp_path):
    """A tag can be moved after review; the release notes give the digest to pin (response.yaml)."""
    text = (ROOT / "response.yaml").read_text()
    tagged = re.search(r"^  image: (\S+)$", text, re.M)
    assert tagged and "@sha256:" not in tagged.group(1)
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(text.replace(tagged.group(0), f"  image: ghcr.io/acme/falco-response-steps@{DIGEST}"))
    outputs = {}
    for label, policy in (("tag", ROOT / "response.yaml"), ("digest", pinned)):
        done = subprocess.run([sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy),
                               "--out", str(tmp_path / label)], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs[label] = done.stdout + done.stderr
    assert f"warning: settings.image {tagged.group(1)} is a tag, not a digest" in outputs["tag"]
    assert "settings.image" not in outputs["digest"]
    assert f"image: ghcr.io/acme/falco-response-steps@{DIGEST}" in (
        tmp_path / "digest" / "pipelines" / "workflowtemplate-falco-delete.yaml").read_text()
