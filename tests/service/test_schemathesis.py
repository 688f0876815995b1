"""Property-based API testing against the live server's own OpenAPI schema: no 5xx, no schema violations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import start_server


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path, models):
    running = start_server(tmp_path / "data", models, extra={"GADER_RATE_PER_MINUTE": "0"})
    try:
        with running.client() as api:  # something to find, so that not every route stops at 404
            api.post("/v1/galleries", json={"name": "g"})
            api.post("/v1/galleries/g/subjects", json={"subject_id": "alice"})
        executable = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
        result = subprocess.run(
            [
                executable,
                "run",
                f"{running.url}/openapi.json",
                "-H",
                f"X-API-Key: {running.admin_key}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "-n",
                "25",
                "--seed",
                "7",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:]
        assert "passed" in result.stdout
    finally:
        running.stop()
