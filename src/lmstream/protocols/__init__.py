"""Wire protocols: pure mappers from lmstream's events to what clients already read.

No web framework here (no Starlette, no Redis): `server/` and the Redis worker frame and send
what these mappers produce. Modules:

(none yet: the UI message stream and the OpenAI-compatible mappers move in here)
"""
