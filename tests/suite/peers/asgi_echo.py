"""An ASGI application for hypercorn, which honours HTTP/1.1 `Upgrade: h2c` (an attacker's way to
speak HTTP/2 to the application through a front end that joins the two connections). It answers
every request with JSON of its path, HTTP version and headers."""
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    seen = {
        "path": scope["path"],
        "http_version": scope["http_version"],
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
    }
    body = (json.dumps(seen, sort_keys=True) + "\n").encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
