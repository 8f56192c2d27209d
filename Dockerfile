# syntax=docker/dockerfile:1
# The steps image: what every Argo step of the response pipelines runs, as
# `python -m steps.<name> --flag=value ...` (the templates set the command; no ENTRYPOINT/CMD).
#
#   docker build -t ghcr.io/falco-response/steps:0.1.0 .
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
    && cd / && rm -rf /src \
    && python -c "import steps.verify, steps.checkpoint, steps.copy, steps.quarantine, steps.delete, steps.report, steps.reap"

# Non-root by default (the distroless "nonroot" uid). Only the copy step runs as root: the
# kubelet writes checkpoint archives 0600 root in a 0700 directory; its WorkflowTemplate says so.
USER 65532:65532
WORKDIR /tmp
