#!/usr/bin/env python3
"""bench/bigconfig.py N PATH [PORT] [FIRST_HASH] [EXTRA_YAML] — a duebridge
config of N users in the form cmd/duebridge-load writes (every value
double-quoted, an argon2id password_hash and one app password a user:
about 330 bytes a user), for bench/bigusers.sh and bench/startanswer.sh.
PORT (default 0) is the HTTP listener's; FIRST_HASH, if given, is user
u0000000's password_hash (a real one, to log in with); EXTRA_YAML is
top-level YAML written before the sources and users."""
import base64, os, sys

n, path = int(sys.argv[1]), sys.argv[2]
port = sys.argv[3] if len(sys.argv) > 3 else "0"
first = sys.argv[4] if len(sys.argv) > 4 else ""
extra = sys.argv[5] if len(sys.argv) > 5 else ""
b64 = lambda k: base64.b64encode(os.urandom(k)).decode().rstrip("=")
h = '"$argon2id$v=19$m=65536,t=3,p=4$%s$%s"'
with open(path, "w") as f:
    f.write('data_dir: "%s"\nstore: sqlite\nhttp:\n  listen: 127.0.0.1:%s\n  public_url: http://127.0.0.1:%s\n'
            % (os.path.join(os.path.dirname(path), "data"), port, port if port != "0" else "8080"))
    f.write(extra)
    f.write('sources:\n  - name: "load"\n    secret: "0123456789abcdef"\nusers:\n')
    for i in range(n):
        u = "u%07d" % i
        ph = '"%s"' % first if i == 0 and first else h % (b64(16), b64(32))
        f.write('  - name: "%s"\n    email: "%s@load.test"\n    password_hash: %s\n'
                '    app_passwords:\n      - name: "prep"\n        hash: %s\n'
                % (u, u, ph, h % (b64(16), b64(32))))
