"""Drives Herald's dashboard in headless Chromium, as a user would, asserting on what the page
shows. Run by tests/api/dashboard.rs:

    drive.py <base_url> <api_key> <screenshot_dir>

The Herald it talks to has a template named `welcome` and a mock network slowed to 10
messages per second per sender (so a 300-recipient campaign is still sending when paused).
Each step saves a screenshot. Exits non-zero at the first thing that does not hold.
"""

import json
import pathlib
import re
import sys
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE, KEY, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2], pathlib.Path(sys.argv[3])
SHOTS.mkdir(parents=True, exist_ok=True)
CHROMIUM = "/usr/bin/chromium"
# Generous: the suite shares two cores with other tests. Waits are on page state, never sleeps.
expect.set_options(timeout=30_000)

SMALL = [f"+1415555710{i}" for i in range(1, 6)]  # the mock delivers these (SPEC §5)
BIG = [f"+1415{2_000_005 + i * 10:07d}" for i in range(300)]
CAMPAIGN_NAME = "Five <b>friends</b>"  # markup in data must show as text
INBOUND = "Is the shop open on Sunday?"

checks = []


def check(name):
    checks.append(name)
    print(f"ok {len(checks)}: {name}", flush=True)


def call(method, path, body=None, content_type="application/json", query=""):
    """The API directly, for setting things up and for the figures the page must match."""
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{BASE}/api/messaging{path}{query}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()}") from None


shots = []


def shot(page, name):
    shots.append(name)
    page.screenshot(path=str(SHOTS / f"{len(shots):02d}-{name}.png"), full_page=True)


def no_horizontal_overflow(page, what):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{what}: the page is {width}px wide on a 390px screen"


def main():
    csv = "phone_number,name\n" + "".join(f"{n},Friend {i}\n" for i, n in enumerate(SMALL)) + "12345,Nobody\n"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        page = context.new_page()
        problems = []
        page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        page.on("console", lambda m: "Content Security Policy" in m.text and problems.append(m.text))

        # 1. A wrong key is refused, with a clear message; the right one signs in.
        page.goto(f"{BASE}/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        key_input = page.get_by_label("API key")
        expect(key_input).to_be_focused()
        page.keyboard.type("not-a-real-key")
        page.keyboard.press("Enter")
        expect(page.locator("#sign-in-error")).to_contain_text("not accepted")
        expect(key_input).to_be_focused()
        expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
        shot(page, "wrong-key-refused")
        check("a wrong key is refused")
        key_input.fill(KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
        assert page.evaluate("sessionStorage.length") == 1, "the key is kept for the tab"
        assert page.evaluate("localStorage.length") == 0, "and nowhere else"
        page.reload()
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        check("the right key signs in (by keyboard), and a reload keeps the session")

        # 2. Launch a campaign from a CSV: the dry run's cost first, then confirm.
        page.get_by_role("link", name="Campaigns", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
        page.get_by_role("link", name="New campaign").click()
        page.get_by_label("Name").fill(CAMPAIGN_NAME)
        page.get_by_label("Recipients (CSV file)").set_input_files(
            {"name": "friends.csv", "mimeType": "text/csv", "buffer": csv.encode()}
        )
        expect(page.locator("#c-template option", has_text="welcome")).to_have_count(1)
        page.get_by_label("Template").select_option("welcome")
        page.get_by_role("button", name="Check cost (dry run)").click()
        dry = call(
            "POST", "/campaigns/upload", csv, "text/csv",
            "?name=x&template_name=welcome&dry_run=true",
        )
        expect(page.locator("#dry-run-cost")).to_contain_text(f"{dry['estimated_cost']:.4f}")
        expect(page.locator("#dry-run-cost")).to_contain_text("USD")
        expect(page.locator("#dry-run")).to_contain_text("nothing was sent yet")
        expect(page.locator("#rejections")).to_contain_text("12345")
        expect(page.locator("#rejections")).to_contain_text(dry["rejected"][0]["code"])
        assert call("GET", "/campaigns")["campaigns"] == [], "a dry run creates nothing"
        shot(page, "dry-run-cost")
        check(f"the dry run shows the cost ({dry['estimated_cost']}) and the rejected row")

        # 3. Confirm, and watch it complete.
        page.get_by_role("button", name="Confirm and send to 5 recipients").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(CAMPAIGN_NAME)
        # Progress follows the event stream (fetch with the key; EventSource cannot send it).
        expect(page.locator("#campaign-live")).to_have_text("Live: updated as messages move.")
        expect(page.locator("#campaign-status")).to_have_text("completed")
        expect(page.locator("#campaign-progress-text")).to_contain_text("5 of 5 delivered")
        expect(page.locator("#campaign-progress-text")).to_contain_text("0 waiting")
        expect(page.locator("#cost-so-far")).to_contain_text(f"{dry['estimated_cost']:.4f}")
        expect(page.get_by_role("button", name="Pause")).to_be_disabled()
        small_id = page.url.rsplit("/", 1)[1]
        # Its results as CSV, downloaded with the key: a header and one row per recipient.
        with page.expect_download() as fetched:
            page.get_by_role("button", name="Download results (CSV)").click()
        csv_lines = pathlib.Path(fetched.value.path()).read_text().strip().splitlines()
        assert csv_lines[0].startswith("message_id,phone_number,status"), csv_lines[0]
        assert len(csv_lines) == 6 and all(",delivered," in l or ",read," in l for l in csv_lines[1:]), csv_lines
        assert fetched.value.suggested_filename == f"{small_id}.csv", fetched.value.suggested_filename
        shot(page, "campaign-completed")
        check("the campaign completes, all 5 delivered, cost as estimated, live from the "
              "event stream, its results downloaded as CSV")

        # 4. Pause and resume a big campaign while it sends, then cancel it.
        big = call("POST", "/campaigns", {"name": "Everyone", "template_name": "welcome",
                                          "variables": {"name": "friend"}, "phone_numbers": BIG})
        page.goto(f"{BASE}/#/campaigns/{big['campaign_id']}")
        expect(page.get_by_role("heading", level=1)).to_have_text("Everyone")
        expect(page.locator("#campaign-status")).to_have_text("running")
        page.get_by_role("button", name="Pause").click()
        expect(page.locator("#campaign-status")).to_have_text("paused")
        expect(page.get_by_text("(requested)")).to_be_visible()
        expect(page.get_by_role("button", name="Resume")).to_be_enabled()
        assert call("GET", f"/campaigns/{big['campaign_id']}")["status"] == "paused"
        shot(page, "campaign-paused")
        page.get_by_role("button", name="Resume").click()
        expect(page.locator("#campaign-status")).to_have_text("running")
        expect(page.get_by_role("button", name="Pause")).to_be_enabled()
        shot(page, "campaign-resumed")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Cancel campaign").click()
        expect(page.locator("#campaign-status")).to_have_text("canceled")
        check("a running campaign is paused, resumed and canceled from its page")

        # 5. The list shows both.
        page.get_by_role("link", name="Campaigns", exact=True).click()
        expect(page.locator("#campaign-table tbody tr")).to_have_count(2)
        expect(page.locator("#campaign-table")).to_contain_text(CAMPAIGN_NAME)
        expect(page.locator("#campaign-table")).to_contain_text("canceled")
        shot(page, "campaign-list")
        # By keyboard: from the page's heading, Tab reaches "New campaign", outlined.
        expect(page.get_by_role("heading", level=1)).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="New campaign")).to_be_focused()
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid", f"the focused link shows an outline ({outline})"
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("New campaign")
        page.go_back()
        expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
        check("the campaign list shows both campaigns, and is usable by keyboard")

        # 6. Find a message by number and open its history.
        page.get_by_role("link", name="Messages", exact=True).click()
        page.get_by_label("Number").fill(SMALL[0])
        page.get_by_role("button", name="Search").click()
        rows = page.locator("#message-table tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Hi Friend 0")
        rows.first.get_by_role("button").click()
        history = page.locator("#history-table")
        expect(history).to_contain_text("queued")
        expect(history).to_contain_text("delivered")
        expect(page.locator("#history")).to_contain_text(f"Message to {SMALL[0]}")
        shot(page, "message-history")
        check("a message is found by number and its history shown")

        # 7. A reply arrives; the inbox shows it unread, and the thread opens.
        call("POST", "/sms/receive", {"phone_number": SMALL[1], "message": INBOUND})
        page.get_by_role("link", name="Inbox", exact=True).click()
        thread = page.locator("#threads li", has_text=SMALL[1])
        expect(thread).to_contain_text("1 unread")
        expect(thread).to_contain_text(INBOUND)
        shot(page, "inbox")
        thread.get_by_role("link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Conversation with {SMALL[1]}")
        expect(page.locator("#conversation")).to_contain_text(INBOUND)
        expect(page.locator("#conversation")).to_contain_text("Hi Friend 1")
        expect(page.locator("#conversation")).not_to_contain_text("unread")  # marked read
        shot(page, "thread")
        page.get_by_role("link", name="All conversations").click()
        expect(page.locator("#threads li", has_text=SMALL[1])).not_to_contain_text("unread")
        check("the inbox shows the unread reply and opens its thread")

        # 8. A phone screen: the pages fit 390 px.
        page.set_viewport_size({"width": 390, "height": 844})
        for name, address, ready in [
            ("campaigns", "#/campaigns", "#campaign-table tbody tr"),
            ("campaign", f"#/campaigns/{small_id}", "#campaign-counters"),
            ("new-campaign", "#/campaigns/new", "#campaign-form"),
            ("messages", "#/messages", "#message-table tbody tr"),
            ("inbox", "#/inbox", "#threads li"),
        ]:
            page.goto(f"{BASE}/{address}")
            expect(page.locator(ready).first).to_be_visible()
            no_horizontal_overflow(page, name)
            shot(page, f"phone-{name}")
        check("campaigns, messages and inbox fit a 390 px screen")

        # 9. The overview: chart, balance, queue, rates (desktop and phone).
        balance = call("GET", "/account/balance")  # for its currency
        for width, height in [(1280, 900), (390, 844)]:
            page.set_viewport_size({"width": width, "height": height})
            page.goto(f"{BASE}/#/overview")
            expect(page.locator("#minute-chart svg")).to_be_visible()
            # The figure itself moves while canceled messages are refunded: its form is checked.
            expect(page.locator("#balance")).to_have_text(
                re.compile(r"^\d{1,3}(,\d{3})*\.\d{2,4} " + re.escape(balance["currency"]) + "$")
            )
            assert page.locator("#minute-chart rect.bar").count() > 0, "the last hour's sends are drawn"
            expect(page.locator("#queue-table")).to_contain_text("urgent")
            expect(page.get_by_text("Delivery rate").first).to_be_visible()
            if width == 390:
                no_horizontal_overflow(page, "overview")
            shot(page, f"overview-{width}")
        check("the overview shows the chart, balance, queue and rates")

        # 10. Sign out forgets the key.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0, "signed out, the key is gone"
        check("sign out forgets the key")

        assert not problems, problems
        browser.close()
    print(f"dashboard: {len(checks)} checks passed")


if __name__ == "__main__":
    main()
