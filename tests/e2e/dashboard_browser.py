"""Drives the dashboard in headless Chromium (Debian's, through Playwright)
and prints what it saw as JSON: whether it asked for the key, the providers
it drew, and the request count of its chart before and after one more
request through the gateway.

usage: dashboard_browser.py URL KEY MODEL [SCREENSHOT.png]"""
import json
import shutil
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
screenshot = sys.argv[4] if len(sys.argv) > 4 else None
chromium = shutil.which("chromium") or "/usr/bin/chromium"


def chat():
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST")
    request.add_header("Authorization", "Bearer " + key)
    request.add_header("content-type", "application/json")
    urllib.request.urlopen(request).read()


def requests_counted(page):
    value = page.get_attribute("#totals", "data-requests")
    return int(value) if value else -1


seen = {}
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url + "/")
    page.wait_for_selector("#key-form", state="visible", timeout=10_000)
    seen["asked_for_key"] = True
    page.fill("#key", key)
    page.click("#key-form button")
    page.wait_for_selector("tr[data-provider]", timeout=10_000)
    seen["providers"] = page.eval_on_selector_all("tr[data-provider]", "rows => rows.map(r => r.dataset.provider)")
    seen["windows"] = page.eval_on_selector_all("tr[data-window]", "rows => rows.map(r => r.dataset.window)")
    seen["plugins"] = page.inner_text("#plugins")
    seen["reload"] = page.inner_text("#reload")
    seen["gpu"] = page.inner_text("#gpu")
    seen["key_stored"] = page.evaluate("sessionStorage.getItem('tollgate-key') !== null")
    before = requests_counted(page)
    chat()
    deadline = time.time() + 10
    after = before
    while time.time() < deadline:
        time.sleep(0.25)
        after = requests_counted(page)
        if after > before:
            break
    seen["requests_before"] = before
    seen["requests_after"] = after
    seen["updated_within_s"] = round(10 - (deadline - time.time()), 2)
    seen["status"] = page.inner_text("#status")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    browser.close()
print(json.dumps(seen))
