"""asv_bench/screenshot.py serves asv's HTML with its CDN links pointing at local copies."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("asv_screenshot", ROOT / "asv_bench" / "screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_localize_rewrites_cdn_links_and_drops_their_pinned_hashes(tmp_path, monkeypatch):
    shot = _module()
    lib = tmp_path / "lib.js"
    lib.write_text("/* jquery */")
    monkeypatch.setattr(shot, "LOCAL", {"jquery-3.3.1.min.js": str(lib), "orderBars.js": None})
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text(
        '<script src="https://code.jquery.com/jquery-3.3.1.min.js" integrity="sha256-x" '
        'crossorigin="anonymous"></script>\n'
        '<script src="https://cdn.example/js/orderBars.js"></script>\n'
        '<script src="https://cdn.example/unknown.js"></script>\n<script src="asv.js"></script>\n')
    out = tmp_path / "site"
    shot.localize(str(html), str(out))
    text = (out / "index.html").read_text()
    assert '<script src="vendor/jquery-3.3.1.min.js"></script>' in text
    assert '<script src="vendor/orderBars.js"></script>' in text
    assert "integrity" not in text and "crossorigin" not in text
    assert 'src="https://cdn.example/unknown.js"' in text  # not ours to replace
    assert (out / "vendor" / "jquery-3.3.1.min.js").read_text() == "/* jquery */"
    assert (out / "vendor" / "orderBars.js").read_text() == ""
    assert (html / "index.html").read_text().count("https://") == 3  # the original is untouched


def test_every_cdn_file_of_the_published_pages_has_a_local_copy():
    """The CDN files asv's pages link to (asv's own template) are the ones LOCAL maps."""
    import re

    import asv
    shot = _module()
    template = Path(asv.__file__).parent / "www" / "index.html"
    cdn = set(re.findall(r'(?:src|href)="https://[^"]*/([^/"]+\.(?:js|css))"', template.read_text()))
    assert cdn and cdn <= set(shot.LOCAL), cdn - set(shot.LOCAL)
