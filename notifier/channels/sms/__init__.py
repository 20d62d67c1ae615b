"""SMS providers, one module each.

twilio, twilio_webhooks: Twilio's REST API and its webhooks, the provider the environment
configures. gateway: a generic HTTP/JSON SMS gateway, the smallest provider there can be.
"""
