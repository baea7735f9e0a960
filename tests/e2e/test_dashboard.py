"""The dashboard in a real headless Chromium (Debian's, driven by Selenium): it loads without console errors,
refuses a wrong token, and shows a deposit made through a business server within two seconds."""
import os

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness.processes import ROOT
from tests.e2e.dashboard_page import shown_total, sign_in
from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, bearer

# The docs' screenshot, renewed by `UPDATE_DOCS=1 make test`; otherwise it goes to the test's own folder.
README_SCREENSHOT = ROOT / "docs" / "dashboard.png"


@pytest.fixture
def browser(make_browser):
    return make_browser()


def test_the_dashboard_shows_the_bank_live_and_refuses_a_wrong_token(start_system, browser, tmp_path):
    system = start_system()
    for business in system.businesses:
        requests.post(f"{business.url}/deposit/dash-{business.name}/100.00", headers=bearer(CLIENT_TOKEN), timeout=5)
    # A lease held now, and a late write fenced off, so that both tables have something to show.
    as_b3, data = bearer(DATA_TOKENS["b3"]), system.data.url
    stale = requests.post(f"{data}/getLock/b3/dash-stale", headers=as_b3, timeout=5).json()["token"]
    requests.post(f"{data}/unLock/b3/dash-stale", headers=as_b3, json={"token": stale}, timeout=5)
    requests.post(f"{data}/commit/b3", headers=as_b3, timeout=5, json={
        "writes": [{"account": "dash-stale", "amount": "1.00", "token": stale}], "unlock": True})
    requests.post(f"{data}/getLock/b3/dash-held", headers=as_b3, timeout=5)

    browser.get(f"{data}/dashboard")
    sign_in(browser, OPERATOR_TOKEN)
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "board").is_displayed())
    assert shown_total(browser) == 300_00
    assert "dash-held" in browser.find_element(By.ID, "leases").text
    assert "dash-stale" in browser.find_element(By.ID, "refusals").text

    requests.post(f"{system.businesses[0].url}/deposit/dash-live/12.34", headers=bearer(CLIENT_TOKEN), timeout=5)
    WebDriverWait(browser, 2).until(lambda b: shown_total(b) == 300_00 + 12_34)
    # The bank's newest history entry, as it was recorded: account, seq, kind, amount, balance after it.
    WebDriverWait(browser, 2).until(lambda b: "dash-live" in b.find_element(By.ID, "entries").text)
    newest = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#entries tr:first-child td")]
    assert newest[1:] == ["dash-live", "1", "deposit", "12.34", "12.34"]
    WebDriverWait(browser, 5).until(lambda b: "b1" in b.find_element(By.ID, "rates").text)
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    screenshot = README_SCREENSHOT if os.environ.get("UPDATE_DOCS") else tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    sign_in(browser, "not-an-operator-token")
    # No promise of speed here, only of refusal: a machine busy with the other xdist worker may take seconds.
    WebDriverWait(browser, 15).until(lambda b: "refused" in b.find_element(By.ID, "status").text)
    assert not browser.find_element(By.ID, "board").is_displayed()
