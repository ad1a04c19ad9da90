#!/usr/bin/env python3
"""A WSGI application on Python's wsgiref, as the legacy application: it answers every request
with JSON of the CGI-style variables it received (HTTP_*, PATH_INFO, QUERY_STRING). wsgiref, like
every CGI/WSGI server, maps '-' and '_' in header names to the same variable and joins repeated
ones with ','. Started with a port (0 for any); prints the port it bound on stdout."""
import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    seen["PATH_INFO"] = environ.get("PATH_INFO", "")
    seen["QUERY_STRING"] = environ.get("QUERY_STRING", "")
    body = (json.dumps(seen, sort_keys=True) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = make_server("127.0.0.1", port, app, handler_class=QuietHandler)
    print(server.server_port, flush=True)
    server.serve_forever()
