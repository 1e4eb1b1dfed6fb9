"""How the ``auth`` service checks and issues credentials: access tokens and API keys checked
per request (``authentication``), login sessions opened and rotated (``sessions``), API keys
made (``api_keys``), one-time tokens mailed and claimed (``one_time_tokens``), failed logins
counted (``throttle``). Only ``auth.service`` imports it."""
