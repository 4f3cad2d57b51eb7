"""Opens the relay's status page in headless Chromium (Debian's package,
driven by playwright) as a phone would, and prints what a test needs to
judge it as one JSON object on stdout: console messages and page errors,
dialogs (a script an outsider slipped in would open one), the layout's
widths, every machine-readable hook with its value, the numbered lists'
items, the tables' rows, and where a runbook link lands. It also saves a
full-page screenshot. It judges nothing itself: tests/status_page.rs does.

Usage: status_page.py <status page URL> <screenshot path> [<wide screenshot path>]
The wide screenshot, when asked for, is taken 1280 px wide (a desktop).
"""

import json
import shutil
import sys
import tempfile

from playwright.sync_api import sync_playwright

# Root in a container: no sandbox; nothing reaches past 127.0.0.1.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# An iPhone-sized screen: the page must honour the viewport meta tag
# (without it a mobile browser lays out 980 px) and fit 390 px.
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}

COLLECT = """() => {
  const value = (e) => e.hasAttribute('data-value') ? e.getAttribute('data-value') : e.textContent.trim();
  const hooks = (attr) => Array.from(document.querySelectorAll('[' + attr + ']'))
      .map((e) => ({ name: e.getAttribute(attr), value: value(e), text: e.textContent.trim() }));
  const rows = (id) => Array.from(document.querySelectorAll('#' + id + ' tbody tr')).map((tr) => ({
      route: tr.getAttribute('data-route'),
      attrs: Object.fromEntries(Array.from(tr.attributes).map((a) => [a.name, a.value])),
      cells: Object.fromEntries(Array.from(tr.cells).map((td) => [td.getAttribute('data-label'), td.textContent.trim()])),
      seconds: Array.from(tr.querySelectorAll('[data-seconds]')).map((e) => Number(e.getAttribute('data-seconds'))),
  }));
  const cell = document.querySelector('#not-delivered-table td');
  const generated = document.querySelector('#generated time');
  return {
    title: document.title,
    scripts: document.querySelectorAll('script').length,
    inner_width: window.innerWidth,
    client_width: document.documentElement.clientWidth,
    scroll_width: document.documentElement.scrollWidth,
    body_scroll_width: document.body.scrollWidth,
    narrow_cell_display: cell ? getComputedStyle(cell).display : null,
    generated: generated ? generated.getAttribute('datetime') : null,
    metrics: hooks('data-metric'),
    cutover: hooks('data-cutover'),
    guard: hooks('data-guard'),
    lists: Array.from(document.querySelectorAll('ol')).map((ol) => Array.from(ol.children).map((li) => ({
      text: li.textContent.trim(),
      marker: getComputedStyle(li).listStyleType,
    }))),
    routes: rows('routes-table'),
    errors: rows('errors-table'),
    not_delivered: rows('not-delivered-table'),
    dkim: rows('dkim-table'),
    runbook_links: Array.from(document.querySelectorAll('#runbook a')).map((a) => a.getAttribute('href')),
    text: document.body.innerText,
  };
}"""


def main():
    url, screenshot = sys.argv[1], sys.argv[2]
    user_data = tempfile.mkdtemp(prefix="ses-relay-chromium-")
    facts = {"console": [], "page_errors": [], "dialogs": [], "failed_requests": []}
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                user_data, executable_path="/usr/bin/chromium", headless=True, args=ARGS, **PHONE
            )
            page = context.new_page()
            page.on("console", lambda m: facts["console"].append({"type": m.type, "text": m.text}))
            page.on("pageerror", lambda e: facts["page_errors"].append(str(e)))
            page.on("requestfailed", lambda r: facts["failed_requests"].append(r.url))

            def dialog(d):
                facts["dialogs"].append(d.message)
                d.dismiss()

            page.on("dialog", dialog)
            response = page.goto(url, wait_until="load", timeout=20000)
            facts["status"] = response.status if response else None
            facts["content_type"] = response.headers.get("content-type") if response else None
            facts.update(page.evaluate(COLLECT))
            page.screenshot(path=screenshot, full_page=True)
            facts["screenshot"] = screenshot
            # The first runbook link, followed as a person would tap it.
            link = page.locator("#runbook a").first
            link.click(timeout=10000)
            page.wait_for_load_state("load", timeout=10000)
            facts["runbook"] = page.evaluate(
                """() => ({
                  url: location.pathname + location.hash,
                  target: !!document.getElementById(location.hash.slice(1)),
                  scroll_width: document.documentElement.scrollWidth,
                  client_width: document.documentElement.clientWidth,
                })"""
            )
            if len(sys.argv) > 3:
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(url, wait_until="load", timeout=20000)
                page.screenshot(path=sys.argv[3], full_page=True)
                facts["wide_screenshot"] = sys.argv[3]
            context.close()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)
    json.dump(facts, sys.stdout)


if __name__ == "__main__":
    main()
