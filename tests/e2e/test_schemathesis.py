"""schemathesis against the live servers: no 5xx, every answer as described, auth included."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import ROOT
from tests.helpers import CLIENT_TOKEN, DATA_TOKENS

SCHEMATHESIS = str(Path(sys.executable).with_name("st"))


@pytest.mark.parametrize("server, token", [("business", CLIENT_TOKEN), ("data", DATA_TOKENS["b1"])])
def test_generated_requests_get_described_answers_and_no_server_error(start_system, server, token):
    system = start_system()
    url = system.businesses[0].url if server == "business" else system.data.url
    result = subprocess.run(
        [SCHEMATHESIS, "--config-file", "schemathesis.toml", "--no-color", "run", f"{url}/openapi.json",
         "--checks", "all", "--header", f"Authorization: Bearer {token}", "--max-examples", "25", "--seed", "1",
         "--request-timeout", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(result.stdout[-5000:], result.stderr[-2000:])
    assert result.returncode == 0
    assert re.search(r"(\d+) generated, \1 passed", result.stdout), "some generated cases did not pass"
