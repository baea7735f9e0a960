"""The dashboard's page as the browser tests use it: sign in with a token, read the bank's total."""
from selenium.webdriver.common.by import By

from shared.money import parse_cents


def sign_in(browser, token):
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()


def shown_total(browser):
    return parse_cents(browser.find_element(By.ID, "total").text)
