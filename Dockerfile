# syntax=docker/dockerfile:1
# The steps image: what every Argo step of the response pipelines runs, as
# `python -m steps.<name> --flag=value ...` (the templates set the command; no ENTRYPOINT/CMD).
#
#   docker build -t ghcr.io/<owner>/falco-response-steps:0.1.0 .
#
# Releases are built by .github/workflows/release.yml (linux/amd64 and linux/arm64, SBOM and
# provenance) and pushed to ghcr.io/<owner>/falco-response-steps; `make lint` runs hadolint on this file.
#
# Dependencies are installed from requirements.lock (exact versions of the core dependencies,
# generated from a tested environment: `python -m tests.test_dockerfile --write-lock`), then the
# project itself without resolving anything again.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOME=/tmp

WORKDIR /src
COPY requirements.lock ./
RUN pip install --only-binary=:all: -r requirements.lock

COPY pyproject.toml ./
COPY engine ./engine
COPY steps ./steps
COPY standin ./standin
COPY pipelines ./pipelines
COPY eventsources ./eventsources
COPY sensors ./sensors
RUN pip install --no-deps . \
    && pip check \
    && rm -rf /src

# Non-root by default (the distroless "nonroot" uid). Only the copy step runs as root: the
# kubelet writes checkpoint archives 0600 root in a 0700 directory; its WorkflowTemplate says so.
USER 65532:65532
WORKDIR /tmp
# every step (engine.names.STEPS, and the reaper DaemonSet's steps.reap) imports from the installed package
# (/src is gone), as the user it runs as
RUN python -c "import importlib, engine.names; [importlib.import_module(f'steps.{s}') for s in (*engine.names.STEPS, 'reap')]"
