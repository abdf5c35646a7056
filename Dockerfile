# guestwatch service image: slim Python base, runs as an unprivileged user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY exporters ./exporters
COPY storage ./storage
COPY migrations ./migrations
COPY agent ./agent
RUN pip install '.[postgres]' \
    && useradd --system --uid 10001 --home-dir /var/lib/guestwatch --create-home guestwatch

USER guestwatch
WORKDIR /var/lib/guestwatch
EXPOSE 9958
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9958/healthz', timeout=4)"
ENTRYPOINT ["guestwatch"]
CMD ["--config", "/etc/guestwatch/guestwatch.toml", "run"]
