# One image for every notifier process: web, worker, scheduler, `db upgrade`, serve.
#
#   docker build -t notifier .
#   docker run -p 8000:8000 notifier           # `notifier serve`: SQLite, no broker, dry-run outbox
#   docker compose up                           # the production shape (docker-compose.yml)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The repository stays at /app: a non-editable install leaves templates/ out of site-packages,
# so NOTIFIER_TEMPLATES points back here.
WORKDIR /app
COPY . /app
RUN pip install . \
    && rm -rf /app/build /app/*.egg-info \
    && useradd --system --create-home --home-dir /var/lib/notifier --uid 10001 notifier

ENV NOTIFIER_TEMPLATES=/app/templates \
    NOTIFIER_OUTBOX=/var/lib/notifier/outbox.txt

# Runs unprivileged; relative paths (the default SQLite file notifier.db) land in its home.
USER notifier
WORKDIR /var/lib/notifier
EXPOSE 8000
ENTRYPOINT ["notifier"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
