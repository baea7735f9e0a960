"""The Postman collection, run by newman against a stack this test starts."""
import subprocess

from harness.processes import ROOT
from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, OTHER_CLIENT_TOKEN

NEWMAN = ROOT / "node_modules" / ".bin" / "newman"


def test_the_postman_collection_passes_under_newman(start_system):
    assert NEWMAN.exists(), "newman is not installed: `make test` runs `npm ci` first"
    system = start_system()
    for server in system.businesses:
        result = subprocess.run(
            [str(NEWMAN), "run", "postman/bank.postman_collection.json", "-e", "postman/local.postman_environment.json",
             "--env-var", f"baseUrl={server.url}", "--env-var", f"clientToken={CLIENT_TOKEN}",
             "--env-var", f"otherClientToken={OTHER_CLIENT_TOKEN}", "--env-var", f"operatorToken={OPERATOR_TOKEN}",
             "--env-var", "clientName=tester",
             "--env-var", f"dataUrl={system.data.url}", "--env-var", f"dataToken={DATA_TOKENS['b1']}",
             "--color", "off"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        print(result.stdout[-3000:], result.stderr[-2000:])
        assert result.returncode == 0
        assert "AssertionError" not in result.stdout
