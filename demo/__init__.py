"""A demo host app: how a web application embeds nbembed (not part of nbembed).

Its backend keeps the tenant API key and calls the gateway; its page uses the
SDK served by the gateway. Run by ``make up`` on http://127.0.0.1:8090/.
"""
