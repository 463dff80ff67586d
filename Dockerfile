# calbridge: multi-stage build; the runtime image holds a virtualenv and runs as a non-root user.
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/calbridge
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN /opt/calbridge/bin/pip install .

FROM python:3.12-slim
ENV PATH=/opt/calbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CALBRIDGE_DATABASE_URL=sqlite:////var/lib/calbridge/calbridge.db
RUN groupadd --system calbridge \
    && useradd --system --gid calbridge --home-dir /var/lib/calbridge --create-home calbridge
COPY --from=build /opt/calbridge /opt/calbridge
USER calbridge
WORKDIR /var/lib/calbridge
VOLUME ["/var/lib/calbridge"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["calbridge", "serve", "--host", "0.0.0.0", "--port", "8000"]
