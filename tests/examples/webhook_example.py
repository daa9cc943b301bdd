# test_webhooks.py: the code under test sends a webhook; the test checks what arrived.
import json
import urllib.request


def notify_paid(url: str, order: int) -> None:
    """The code under test: tells another service that an order was paid."""
    body = json.dumps({"event": "paid", "order": order}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-Signature": "sha256=5d41402abc4b2a76b9719d911017c592",
    })
    urllib.request.urlopen(request, timeout=10).close()


def test_a_paid_order_sends_one_signed_webhook(echo):
    # `echo` is a fresh bin: echo.url("/hooks/orders") is .../b/<bin>/hooks/orders.
    notify_paid(echo.url("/hooks/orders"), order=42)

    # Answered the moment the webhook is recorded (at most 5 s by default).
    hook = echo.wait_for("method:POST path:/hooks/orders header:X-Signature=sha256=*")
    assert hook["request"]["json"] == {"event": "paid", "order": 42}
    assert hook["response"]["status"] == 200

    # Exactly one, and nothing else reached the bin.
    echo.assert_received("path:/hooks/*", count=1)
    echo.assert_received(count=1)
