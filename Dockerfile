# syntax=docker/dockerfile:1
# typeform-reconciler as a container: `docker run IMAGE plan ...` is `reconcile plan ...`.
#
#   docker build -t typeform-reconciler .
#   docker run --rm typeform-reconciler --version
#   docker run --rm -v "$PWD/manifests:/work/manifests:ro" \
#     -v "$PWD/secrets:/run/secrets:ro" -e TYPEFORM_TOKEN -e RECONCILE_STATE \
#     typeform-reconciler drift --secret-dir /run/secrets /work/manifests
#
# Secrets: tokens and signing secrets come from the environment ({env: NAME}) or from files
# mounted under /run/secrets (Docker and Kubernetes secrets). A {file: PATH} reference, a
# webhook's secret or an Account's `token: {file: /run/secrets/typeform-token}` alike, is read
# only inside the manifest tree or a directory allowed with `--secret-dir /run/secrets` (or
# RECONCILE_SECRET_DIRS=/run/secrets): without it, even `reconcile validate` refuses the
# reference. It is not allowed by default, so a manifest cannot read mounted files nobody meant
# for it. The default account's token is only ever TYPEFORM_TOKEN.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY reconciler/ reconciler/
# A virtual environment copied whole into the final stage: no build tools, no source tree there.
RUN python -m venv /opt/reconcile \
 && /opt/reconcile/bin/pip install --no-cache-dir '.[postgres]'

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="typeform-reconciler" \
      org.opencontainers.image.description="Typeform webhooks as code: plan, apply, drift" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 reconcile \
 && useradd --system --uid 10001 --gid reconcile --home-dir /work --create-home \
      --shell /usr/sbin/nologin reconcile
COPY --from=build /opt/reconcile /opt/reconcile
ENV PATH=/opt/reconcile/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /work
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["reconcile"]
CMD ["--help"]
