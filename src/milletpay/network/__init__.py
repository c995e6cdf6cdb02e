"""The card network: ISO 8583 between acquirers, the switch and issuers.

This package owns the wire: `iso8583` (the message spec, typed messages, validation,
response codes, STAN and RRN), `framing` (the 2-byte length prefix on a TCP stream) and
`link` (an asyncio server and client that exchange messages). It must never decide an
authorization: routing, detokenization and stand-in are the switch's, built on top.
"""
