"""POST /scheduler/trigger through the app factory: refused while automatic runs are off, token rules.

The coalescing, the follow-up and two workers are tested under real gunicorn
in tests/e2e/test_webhooks_and_triggers.py; these cases need no engine.
"""

from __future__ import annotations

from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.service.scheduler import RtarfEventScheduler
from tests.infra.support import GatedJob, offline_settings


def test_trigger_is_refused_while_the_interval_job_is_disabled_and_needs_the_token() -> None:
    settings = offline_settings(RTARF_SYNC_ENABLED="false", RTARF_API_TOKEN="t0ken-for-trigger")
    app = create_app(
        settings, scheduler=RtarfEventScheduler(settings=settings, job=GatedJob(gated=False)), start_scheduler=True
    )
    try:
        client = app.test_client()
        assert client.post("/scheduler/trigger").status_code == 401
        refused = client.post("/scheduler/trigger", headers={"Authorization": "Bearer t0ken-for-trigger"})
        assert refused.status_code == 409
        assert refused.get_json()["error"] == "Conflict" and "stopped" in refused.get_json()["message"]
        status = client.get("/scheduler/status").get_json()
        assert status["trigger"] == {"pending": False, "running": False, "due_at": None, "runs": 0}
        assert status["total_syncs"] == 0  # nothing ran
    finally:
        scheduler_of(app).shutdown(timeout=5)
