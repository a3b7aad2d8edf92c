# One image for every lisa-choreo service; the command picks the service (see docker-compose.yml).
# Built only where a Docker engine exists; the development machines validate it statically.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LISA_CHOREO_HOME=/var/lib/lisa-choreo
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/lisa-choreo lisa \
    && mkdir -p /var/lib/lisa-choreo && chown lisa /var/lib/lisa-choreo
USER lisa
ENTRYPOINT ["lisa-choreo"]
CMD ["--help"]
