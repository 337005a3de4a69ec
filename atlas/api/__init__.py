"""The HTTP API: FastAPI app factory, routers, and the middleware that guards them."""
