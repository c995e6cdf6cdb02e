"""Remote payments: merchants, payment intents, QR, refunds, webhooks, payouts."""
