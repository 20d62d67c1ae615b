"""SMS providers, one module each: twilio (Twilio's REST API), the provider the environment
configures."""
