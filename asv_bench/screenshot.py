"""A PNG of one benchmark's graph in the published asv HTML (``make bench-screenshot``).

    python asv_bench/screenshot.py BENCHMARK OUT.png [--html asv_bench/html]

asv's pages load jQuery, flot, bootstrap and a few plugins from public CDNs. On a machine without
internet access the page shows "Can not determine continental origin of swallow" instead of the
graph, so this serves a copy of the HTML whose CDN links point at Debian's packaged copies of the
same libraries (``apt-get install chromium libjs-jquery libjs-jquery-flot libjs-jquery-stupidtable
node-blueimp-md5 libjs-bootstrap``) and takes the screenshot with headless Chromium. flot's
orderBars plugin (bar charts, which a time-series graph does not draw) has no Debian package and is
served empty.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

JS = "/usr/share/javascript"
# the CDN file asv links to (its last path component) -> Debian's copy
LOCAL = {
    "jquery-3.3.1.min.js": f"{JS}/jquery/jquery.min.js",
    "jquery.flot.min.js": f"{JS}/jquery-flot/jquery.flot.min.js",
    "jquery.flot.time.min.js": f"{JS}/jquery-flot/jquery.flot.time.min.js",
    "jquery.flot.selection.min.js": f"{JS}/jquery-flot/jquery.flot.selection.min.js",
    "jquery.flot.categories.min.js": f"{JS}/jquery-flot/jquery.flot.categories.min.js",
    "stupidtable.min.js": f"{JS}/jquery-stupidtable/stupidtable.min.js",
    "md5.min.js": f"{JS}/blueimp-md5/md5.min.js",
    "bootstrap.min.js": f"{JS}/bootstrap/js/bootstrap.min.js",
    "bootstrap.min.css": f"{JS}/bootstrap/css/bootstrap.min.css",
    "jquery.flot.orderBars.js": None,
}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def localize(html_dir: str, out_dir: str) -> None:
    """Copy ``html_dir`` to ``out_dir`` with every CDN link of its pages served from ``vendor/``."""
    shutil.copytree(html_dir, out_dir, dirs_exist_ok=True)
    vendor = os.path.join(out_dir, "vendor")
    os.makedirs(vendor, exist_ok=True)
    for name, src in LOCAL.items():
        dst = os.path.join(vendor, name)
        if src is None:
            open(dst, "w").close()
        elif not os.path.exists(src):
            raise SystemExit(f"{src} is missing: apt-get install libjs-jquery libjs-jquery-flot "
                             f"libjs-jquery-stupidtable node-blueimp-md5 libjs-bootstrap")
        else:
            shutil.copy(src, dst)
    for page in os.listdir(out_dir):
        if not page.endswith(".html"):
            continue
        path = os.path.join(out_dir, page)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r'(src|href)="https://[^"]*/([^/"]+)"',
                      lambda m: f'{m[1]}="vendor/{m[2]}"' if m[2] in LOCAL else m[0], text)
        # the pages pin the CDN files' hashes (subresource integrity); Debian's copies differ
        text = re.sub(r'\s(integrity|crossorigin)="[^"]*"', "", text)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="asv_bench/screenshot.py")
    p.add_argument("benchmark", help="e.g. ultra_low_latency.time_single_enqueue_dequeue")
    p.add_argument("out", help="the PNG to write")
    p.add_argument("--html", default=os.path.join(os.path.dirname(__file__), "html"),
                   help="asv's published HTML (default asv_bench/html: `make bench-history`)")
    p.add_argument("--size", default="1300,850", help="window size, pixels (default 1300,850)")
    args = p.parse_args(argv)
    if not os.path.exists(os.path.join(args.html, "index.html")):
        print(f"{args.html}: no published asv HTML (run `make bench-history` first)", file=sys.stderr)
        return 2
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        site = os.path.join(tmp, "html")
        localize(args.html, site)
        handler = functools.partial(_Quiet, directory=site)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/#{args.benchmark}"
        try:
            r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--hide-scrollbars", f"--window-size={args.size}",
                                "--virtual-time-budget=10000",
                                f"--screenshot={os.path.abspath(args.out)}", url],
                               capture_output=True, text=True, timeout=180)
        finally:
            server.shutdown()
    if r.returncode != 0 or not os.path.exists(args.out):
        print(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}", file=sys.stderr)
        return 1
    print(f"{args.out}: {args.benchmark} from {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
