def test_the_refund_webhook(echo):
    notify_paid(echo.url("/hooks/orders"), order=42)  # sent, but not what the test expects
    echo.wait_for("method:POST path:/hooks/refunds", timeout=1)
