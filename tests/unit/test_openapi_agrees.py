"""The OpenAPI descriptions, the servers' routes and the API page (docs/api.md) name the same operations, and the
page names every error code the descriptions give."""
import json
import re

import pytest

from business.business_server import create_app as create_business_app
from harness.processes import ROOT
from shared.settings import load_business_settings, load_data_settings
from tests.helpers import business_environ, data_environ

API_PAGE = ROOT / "docs" / "api.md"


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


def error_codes(package):
    """The codes and fields the descriptions of the error answers name: each `word_with_underscores`, and a code
    that opens a description before its colon ("locked: ...")."""
    document = json.loads((ROOT / package / "openapi.json").read_text())
    codes = set()
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                if int(status) >= 400:
                    text = response.get("description", "")
                    codes |= set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", text))
                    codes |= set(re.findall(r"^([a-z_]+):", text))
    return codes


@pytest.mark.parametrize("package", ["data", "business"])
def test_the_api_page_names_every_described_operation(package):
    page = API_PAGE.read_text()
    missing = [f"{method} {path}" for method, path in described(package)
               if path != "/openapi.json" and f"`{method} {path}`" not in page]
    assert missing == []


@pytest.mark.parametrize("package", ["data", "business"])
def test_the_api_page_names_every_described_error_code(package):
    page = API_PAGE.read_text()
    assert error_codes(package), "the descriptions name no error code: this test would check nothing"
    assert sorted(code for code in error_codes(package) if f"`{code}`" not in page) == []


def test_the_readme_sends_its_reader_to_the_api_page():
    assert "](docs/api.md" in (ROOT / "README.md").read_text()
