# rekko's recommendation service (HTTP API on port 8000).
#
# Not built in rekko's CI: the development machines have no Docker engine. Build and run it
# where Docker is available:
#
#   docker build -t rekko .
#   docker run -p 127.0.0.1:8000:8000 \
#     -e REKKO_READ_KEY=... -e REKKO_EVENTS_KEY=... -e REKKO_ADMIN_KEY=... rekko
#
# The container listens on 0.0.0.0, so the service refuses to start without three long,
# non-placeholder keys. Data (SQLite database and model versions) lives in /var/lib/rekko;
# mount a volume there, or set REKKO_DATABASE_URL to PostgreSQL (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/rekko
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# The constraints pin every dependency to the versions CI tested.
RUN pip install -c constraints.txt ".[serve,postgres]"

RUN useradd --system --uid 10001 --home-dir /var/lib/rekko --create-home rekko
USER rekko
WORKDIR /var/lib/rekko

ENV REKKO_HOST=0.0.0.0 \
    REKKO_PORT=8000 \
    REKKO_WORKERS=2 \
    REKKO_DATABASE_URL=sqlite:////var/lib/rekko/rekko.db \
    REKKO_MODEL_DIR=/var/lib/rekko/models \
    REKKO_TRAINING_EXECUTOR=process

EXPOSE 8000
VOLUME ["/var/lib/rekko"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"

# The same as `rekko serve` with settings from REKKO_* variables.
CMD ["python", "-m", "rekko.service"]
