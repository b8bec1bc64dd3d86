#!/usr/bin/python3
"""A task system's callback endpoint for .ci/caldav-clients.sh.

Usage: callback_receiver.py PORT SECRET OUTFILE

Answers every POST with 200 and appends one JSON line per request to
OUTFILE: the body's fields plus "signature_ok", whether
X-Duebridge-Signature is the HMAC-SHA256 of the body with SECRET.
Listens on 127.0.0.1 only; stops on SIGTERM.
"""
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, secret, outfile = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Duebridge-Signature", "")
        try:
            record = json.loads(body)
        except ValueError:
            record = {"raw": body.decode("utf-8", "replace")}
        record["signature_ok"] = hmac.compare_digest(want, got)
        with open(outfile, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
