"""The official `twilio` library (PyPI) against Herald's Twilio-compatible API.

Run by tests/api/twilio_library.rs with HERALD_URL, HERALD_ACCOUNT and HERALD_KEY set. The
application code below is what a Twilio user writes; only the base URL and the credentials
are Herald's. Exits non-zero at the first thing that does not hold.
"""

import datetime
import os
import time

from twilio.base.exceptions import TwilioRestException
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
refused = expect_error(
    lambda: twilio.messages.create(
        to=TO, from_="HERALD", body="x", status_callback="https://example.com/cb"
    ),
    400,
    21609,
)
assert "webhook" in refused.msg, refused.msg
expect_error(lambda: twilio.messages("msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2").fetch(), 404, 20404)
expect_error(lambda: client("not-the-key").messages(sent.sid).fetch(), 401, 20003)
checks += 1

# Another account sees none of ours, and cannot borrow our account id.
other = client(os.environ["HERALD_OTHER_KEY"], os.environ["HERALD_OTHER_ACCOUNT"])
expect_error(lambda: other.messages(sent.sid).fetch(), 404, 20404)
assert other.messages.list() == []
expect_error(lambda: client(os.environ["HERALD_OTHER_KEY"]).messages(sent.sid).fetch(), 401, 20003)
checks += 1

print(f"twilio library: {checks} checks passed")
