# RTARF Event Sync: the HTTP service under gunicorn, one worker with the scheduler inside it.
#   docker build -t rtarf-event-sync .
#   docker run -p 8000:8000 -e RTARF_ES_URL=... -e RTARF_DATABASE_URL=... rtarf-event-sync
# The same image runs the command line: docker run --rm ... rtarf-event-sync python -m rtarf_sync status
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies before the code, so a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rtarf
COPY wsgi.py gunicorn.conf.py ./
COPY config/ ./config/
COPY rtarf_sync/ ./rtarf_sync/

USER rtarf
# The port config/ binds unless RTARF_BIND (or PORT) says otherwise.
EXPOSE 8000

# slim has no curl: ask /healthz with Python where the server really listens (gunicorn's own -b, else the
# bind config/ derives from RTARF_BIND / PORT; a wildcard host is asked on loopback, unix: on its socket).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "rtarf_sync.server.healthcheck"]

# exec form: gunicorn is PID 1 and gets SIGTERM itself, so a running sync stops after its page.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
