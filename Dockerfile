# One image for every lisa-choreo service; the command picks the service (docker-compose.yml,
# deploy/k8s). The base image is a build argument: the public Python image where a registry is
# reachable, a locally made Debian bookworm (Python 3.11) where none is
# (lisa_choreo.localstack.containers, tests/integration/test_container.py). Any base with
# `python3 -m venv` (Python >= 3.11) does.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# Names the build stage's image, so that a builder can prune it (the final image has no label).
LABEL org.lisa-choreo.stage=build
# PIP_NO_INDEX=1 with the wheels in the context's wheels/ folder: an offline build.
ARG PIP_NO_INDEX=0
ENV PIP_NO_INDEX=${PIP_NO_INDEX} PIP_FIND_LINKS=/src/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
# The runtime dependencies only (no dev, bench extras); on Python < 3.12 the simulators are not
# dependencies (pyproject markers): services never import them.
RUN python3 -m venv /opt/lisa-choreo \
    && /opt/lisa-choreo/bin/pip install --no-compile /src \
    && find /opt/lisa-choreo -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ENV PATH=/opt/lisa-choreo/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LISA_CHOREO_HOME=/var/lib/lisa-choreo LISA_STORE_URI=file:///var/lib/lisa-choreo/store \
    LISA_HEALTH_PORT=8080 LISA_HEALTH_HOST=0.0.0.0 MPLCONFIGDIR=/tmp/matplotlib
COPY --from=build /opt/lisa-choreo /opt/lisa-choreo
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/lisa-choreo --no-create-home lisa \
    && mkdir -p /var/lib/lisa-choreo && chown 10001:10001 /var/lib/lisa-choreo
USER 10001:10001
WORKDIR /var/lib/lisa-choreo
EXPOSE 8080
# The service's readiness (choreo.health); a tool run (`topics`, `--help`) serves none: compose
# disables the check there.
HEALTHCHECK --interval=10s --timeout=3s --retries=12 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['LISA_HEALTH_PORT'], timeout=2)"]
ENTRYPOINT ["lisa-choreo"]
CMD ["--help"]
