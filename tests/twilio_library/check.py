"""The official `twilio` library (PyPI) against Herald's Twilio-compatible API.

Run by tests/api/twilio_library.rs with HERALD_URL, HERALD_ACCOUNT and HERALD_KEY set. The
application code below is what a Twilio user writes; only the base URL and the credentials
are Herald's. Exits non-zero at the first thing that does not hold.
"""

import datetime
import http.server
import os
import threading
import time
import urllib.parse

from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

URL = os.environ["HERALD_URL"]
ACCOUNT = os.environ["HERALD_ACCOUNT"]
KEY = os.environ["HERALD_KEY"]
TO = "+14155557001"


def client(key=KEY, account=ACCOUNT):
    c = Client(account, key)
    c.api.base_url = URL  # the one change a Twilio application makes
    return c


def expect_error(call, status, code):
    try:
        call()
    except TwilioRestException as e:
        assert e.status == status, (e.status, e.code, e.msg)
        assert e.code == code, (e.status, e.code, e.msg)
        return e
    raise AssertionError(f"expected a {status} with code {code}")


twilio = client()
checks = 0

# Send, as a Twilio application does.
sent = twilio.messages.create(to=TO, from_="HERALD", body="Hello from twilio-python")
assert sent.sid.startswith("msg_"), sent.sid
assert sent.status == "queued", sent.status
assert sent.to == TO and sent.from_ == "HERALD", (sent.to, sent.from_)
assert sent.body == "Hello from twilio-python"
assert sent.num_segments == "1" and sent.account_sid == ACCOUNT
assert sent.direction == "outbound-api"
checks += 1

# Fetch it until the network has delivered it.
deadline = time.time() + 20
while True:
    fetched = twilio.messages(sent.sid).fetch()
    if fetched.status in ("delivered", "read") or time.time() > deadline:
        break
    time.sleep(0.1)
assert fetched.sid == sent.sid and fetched.body == sent.body
assert fetched.status in ("delivered", "read"), fetched.status
assert fetched.date_sent is not None and fetched.price is not None
checks += 1

# List with filters and Twilio's paging: four more to the same number, two per page.
more = [twilio.messages.create(to=TO, from_="HERALD", body=f"n{i}").sid for i in range(4)]
listed = [m.sid for m in twilio.messages.list(to=TO, page_size=2)]
assert len(listed) == len(set(listed)) == 5, listed
assert set(listed) == set(more) | {sent.sid}, listed
assert listed[0] == more[-1], "newest first"
assert [m.sid for m in twilio.messages.list(to="+14155557002")] == []
assert len(twilio.messages.list(from_="HERALD", limit=3)) == 3
today = datetime.datetime.now(datetime.timezone.utc)
assert len(twilio.messages.list(to=TO, date_sent=today)) == 5
assert twilio.messages.list(to=TO, date_sent_after=today + datetime.timedelta(days=2)) == []
checks += 1

# Errors arrive as Twilio's, through the library's own exception.
expect_error(lambda: twilio.messages.create(to="12", from_="HERALD", body="x"), 400, 21211)
expect_error(lambda: twilio.messages.create(to=TO, from_="HERALD"), 400, 21602)
expect_error(lambda: twilio.messages("msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2").fetch(), 404, 20404)
expect_error(lambda: client("not-the-key").messages(sent.sid).fetch(), 401, 20003)
checks += 1

# Another account sees none of ours, and cannot borrow our account id.
other = client(os.environ["HERALD_OTHER_KEY"], os.environ["HERALD_OTHER_ACCOUNT"])
expect_error(lambda: other.messages(sent.sid).fetch(), 404, 20404)
assert other.messages.list() == []
expect_error(lambda: client(os.environ["HERALD_OTHER_KEY"]).messages(sent.sid).fetch(), 401, 20003)
checks += 1

# Status callbacks: posted to the application's own endpoint, form-encoded, and accepted by
# the library's RequestValidator with the auth token the application holds (its key).
callbacks = []


class StatusEndpoint(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        params = {name: values[0] for name, values in form.items()}
        url = f"http://127.0.0.1:{self.server.server_port}{self.path}"
        callbacks.append((url, params, self.headers.get("X-Twilio-Signature", ""),
                          self.headers.get("Content-Type", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StatusEndpoint)
threading.Thread(target=endpoint.serve_forever, daemon=True).start()
callback_url = f"http://127.0.0.1:{endpoint.server_port}/twilio/status?app=1"
tracked = twilio.messages.create(to=TO, from_="HERALD", body="track me",
                                 status_callback=callback_url)
deadline = time.time() + 30
while time.time() < deadline:
    if any(p.get("MessageStatus") in ("delivered", "read") for _, p, _, _ in callbacks):
        break
    time.sleep(0.1)
validator = RequestValidator(KEY)
statuses = [p.get("MessageStatus") for _, p, _, _ in callbacks]
assert "sent" in statuses and ("delivered" in statuses or "read" in statuses), statuses
for url, params, signature, content_type in callbacks:
    assert url == callback_url, url
    assert content_type == "application/x-www-form-urlencoded", content_type
    assert validator.validate(url, params, signature), (url, params, signature)
    assert not RequestValidator("another-token").validate(url, params, signature)
    assert params["MessageSid"] == params["SmsSid"] == tracked.sid, params
    assert params["AccountSid"] == ACCOUNT and params["ApiVersion"] == "2010-04-01", params
    assert params["To"] == TO and params["From"] == "HERALD", params
    assert params["SmsStatus"] == params["MessageStatus"], params
# A tampered field no longer validates.
url, params, signature, _ = callbacks[-1]
assert not validator.validate(url, {**params, "MessageStatus": "failed"}, signature)
# Messages sent without a StatusCallback post nothing here.
assert all(p["MessageSid"] == tracked.sid for _, p, _, _ in callbacks)
endpoint.shutdown()
checks += 1

print(f"twilio library: {checks} checks passed")
