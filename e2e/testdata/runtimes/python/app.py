# Python 3 on $PORT with nothing but the standard library.
import http.server
import os


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from python\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


port = int(os.environ["PORT"])
print("python listening on", port, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Hello).serve_forever()
