"""The FastAPI app: widget websocket, conversation store, actions, bus and the CLI."""
