"""The worker page's app icons (api/static/m/icons/), drawn on a canvas in Debian's headless Chromium.

A red tile with 哨 in Noto Sans CJK (fonts-noto-cjk) and two signal arcs: 192 and 512 px with rounded
corners, a full-bleed 512 px maskable one (the glyph inside the safe zone), and the 180 px Apple touch icon.

    .venv/bin/python scripts/make_icons.py
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import chromium, until

OUT = Path(__file__).resolve().parents[1] / "api" / "static" / "m" / "icons"

DRAW = """
const [size, round, scale] = arguments;
const c = document.createElement('canvas');
c.width = c.height = size;
const g = c.getContext('2d');
const r = round ? size * 0.2 : 0;
g.fillStyle = '#b71c1c';
g.beginPath();
g.moveTo(r, 0); g.arcTo(size, 0, size, size, r); g.arcTo(size, size, 0, size, r);
g.arcTo(0, size, 0, 0, r); g.arcTo(0, 0, size, 0, r); g.closePath(); g.fill();
const s = size * scale;
g.fillStyle = '#ffffff';
g.textAlign = 'center'; g.textBaseline = 'middle';
g.font = `900 ${Math.round(s * 0.58)}px "Noto Sans CJK SC"`;
g.fillText('哨', size * 0.46, size * 0.54);
g.strokeStyle = '#ffd54f'; g.lineWidth = Math.max(2, s * 0.045); g.lineCap = 'round';
for (const k of [0.16, 0.25]) {
  g.beginPath();
  g.arc(size * 0.5 + s * 0.2, size * 0.5 - s * 0.2, s * k, -Math.PI * 0.42, -Math.PI * 0.08);
  g.stroke();
}
return c.toDataURL('image/png');
"""

ICONS = {
    "icon-192.png": (192, True, 1.0),
    "icon-512.png": (512, True, 1.0),
    "maskable-512.png": (512, False, 0.72),
    "apple-touch-icon.png": (180, False, 0.9),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with chromium(600, 600) as d:
        d.get("data:text/html;charset=utf-8,<html><body style='font-family:\"Noto Sans CJK SC\"'>哨</body></html>")
        until(lambda: d.execute_script("return document.fonts.check('40px \"Noto Sans CJK SC\"', '哨')"), timeout=20)
        for name, (size, round_, scale) in ICONS.items():
            url = d.execute_script(DRAW, size, round_, scale)
            (OUT / name).write_bytes(base64.b64decode(url.split(",", 1)[1]))
            print(f"{OUT / name}: {size}x{size}")


if __name__ == "__main__":
    main()
