"""The OpenAPI descriptions, the servers' routes and the README's API section name the same operations."""
import json
import re

import pytest

from harness.processes import ROOT
from business.business_server import create_app as create_business_app
from shared.settings import load_business_settings, load_data_settings
from tests.helpers import business_environ, data_environ


def normalized(path):
    return re.sub(r"\{[^}]+\}|<[^>]+>", "{}", path)


def described(package):
    document = json.loads((ROOT / package / "openapi.json").read_text())
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def served(app):
    return {(method, normalized(rule.rule)) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.mark.parametrize("package, app", [
    ("data", lambda make_data_app: make_data_app(load_data_settings(data_environ()))),
    ("business", lambda make_data_app: create_business_app(load_business_settings(business_environ(
        "b1", "http://127.0.0.1:9")))),
])
def test_every_route_is_described_and_every_description_is_served(package, app, make_data_app):
    assert {(method, normalized(path)) for method, path in described(package)} == served(app(make_data_app))


@pytest.mark.parametrize("package", ["data", "business"])
def test_the_readme_names_every_described_operation(package):
    readme = (ROOT / "README.md").read_text()
    missing = [f"{method} {path}" for method, path in described(package)
               if path != "/openapi.json" and f"`{method} {path}`" not in readme]
    assert missing == []
