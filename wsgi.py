"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, or `python wsgi.py` for a dev server."""

import os
import sys

from config import ConfigError, load_settings
from rtarf_sync import create_app
from rtarf_sync.pipelines_file import load_pipelines

try:
    settings = load_settings(os.environ)
    pipelines = load_pipelines(os.environ, settings)
except ConfigError as error:
    print(f"rtarf-sync: configuration error: {error}", file=sys.stderr)
    raise SystemExit(2) from None

# Under gunicorn the worker's post_worker_init hook starts the scheduler after the fork; under the
# Werkzeug reloader only the serving child (WERKZEUG_RUN_MAIN=true) may, never the watcher.
app = create_app(settings, pipelines=pipelines, start_scheduler=os.environ.get("WERKZEUG_RUN_MAIN") == "true")

if __name__ == "__main__":
    import logging

    from rtarf_sync.server.exposure import allowed_to_listen
    from rtarf_sync.service.extension import start

    if not allowed_to_listen(
        settings, [(settings.bind, settings.bind_source)], logging.getLogger("rtarf_sync.exposure").warning
    ):
        raise SystemExit(2)
    start(app)
    host, _, port = settings.bind.rpartition(":")
    app.run(host=host or "0.0.0.0", port=int(port), use_reloader=False, threaded=True)
