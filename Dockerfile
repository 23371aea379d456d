FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENV HOST=0.0.0.0 PORT=8910 WORKERS=2
EXPOSE 8910
# DATABASE_URL and REDIS_URL come from the environment: nothing embedded starts here.
CMD ["python", "-m", "app", "serve"]
