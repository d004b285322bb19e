"""LEADERBOARD.html rendered by a real headless browser: it paints, and every inline image decodes.

Needs Debian's `chromium` (skipped without it). The screenshot is written to the test's tmp folder and its path
printed (`pytest -s`); benchmarks/leaderboard-html.png is one taken of the committed leaderboard."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dpbench.api.registry import load_registry
from dpbench.report.leaderboard import RECORDS_DIR, build_leaderboard

CHROMIUM = Path("/usr/bin/chromium")
LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"
PROBE = ('<script>window.addEventListener("load", () => { const images = [...document.images]; '
         'document.title = "decoded " + images.filter(i => i.complete && i.naturalWidth > 0).length '
         '+ " of " + images.length; });</script></body>')

pytestmark = [pytest.mark.slow,  # a headless chromium per test
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


def _chromium(tmp_path: Path, *arguments: str) -> str:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _decoded(tmp_path: Path, page: str, name: str) -> tuple[int, int]:
    """(images the browser decoded, images on the page), counted by an inline script run at load."""
    probe = tmp_path / name
    probe.write_text(page.replace("</body>", PROBE))
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert "<table>" in dom
    decoded, total = re.search(r"<title>decoded (\d+) of (\d+)</title>", dom).groups()
    return int(decoded), int(total)


@pytest.fixture(scope="module")
def committed_page(tmp_path_factory) -> tuple[Path, str]:
    board = tmp_path_factory.mktemp("board")
    shutil.copytree(LEADERBOARD / RECORDS_DIR, board / RECORDS_DIR)
    path = build_leaderboard(board / RECORDS_DIR, board, list(load_registry().published.values()), "html")
    return path, path.read_text()


def test_the_html_leaderboard_paints_in_a_headless_browser(committed_page, tmp_path):
    from PIL import Image

    path, _ = committed_page
    screenshot = tmp_path / "leaderboard-html.png"
    _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1400,2000", path.as_uri())
    print(f"\nscreenshot of {path.name}: {screenshot}")
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1400, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 500  # text, plots and sample grids, not a blank or single-colour page
    white = max(count for count, colour in colours if colour == (255, 255, 255))
    assert white < 0.9 * image.size[0] * image.size[1]


def test_every_inline_image_decodes_and_a_broken_one_is_caught(committed_page, tmp_path):
    _, page = committed_page
    images = len(re.findall(r"<img ", page))
    assert images >= 3 and _decoded(tmp_path, page, "probe.html") == (images, images)
    # the probe can fail: one image's data cut short no longer decodes
    first = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    broken = page[:first.start(1)] + first.group(1)[:40] + page[first.end(1):]
    assert _decoded(tmp_path, broken, "broken.html") == (images - 1, images)
