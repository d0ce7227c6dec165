"""A screenshot of the operations-center screen during `whistle demo`, at 1920x1080, for the README.

Starts `whistle demo` on a fresh state directory and a free port, reads the printed link (with the
token), lets the street run for `--warmup` seconds (smoke drills every `--incident-every` seconds,
some confirmed fires), opens the screen in Debian's headless Chromium (Selenium, tests/browser.py),
waits until the map, the charts and the ticker are drawn and a fire is on the map, and saves the page.

The demo has no grid workers at their phones yet, so while it runs this script plays them through the
API, as a worker's app would: each worker answers their dispatched tickets at their own pace (some
within the 3-minute deadline of a critical ticket, some after it), goes on site and resolves them
(confirmed or false alarm); and the operations center puts one building under an elevator maintenance
window. That is what the counters, the assessment ranking and the silences panel then show.

    make screenshot            # = .venv/bin/python scripts/screenshot.py --out docs/screen.png
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datetime import UTC, datetime, timedelta

import httpx

from tests.browser import chromium, until
from tests.demo_process import running_demo

READY = """
const m = echarts.getInstanceByDom(document.getElementById('map'));
return !!document.body.getAttribute('data-updated') && document.getElementById('connlabel').textContent === '实时'
  && m.getOption().series.length > 0 && document.querySelectorAll('#ticker .alarm').length >= 3
  && document.getElementById('map').getAttribute('data-critical') !== '';
"""


def play_workers(base: str, token: str, seconds: float, rng: random.Random) -> None:
    """Answer, attend and resolve tickets over the API for `seconds`, each worker at their own pace."""
    pace: dict[str, float] = {}
    plan: dict[str, list[tuple[float, str, dict[str, str] | None]]] = {}
    end = time.monotonic() + seconds
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        doc = http.get("/api/v1/map").json()
        building = next(f["id"] for f in doc["features"] if f["properties"]["kind"] == "building")
        now = datetime.now(UTC)
        http.post(
            "/api/v1/silences",
            json={
                "scope_type": "building",
                "scope_id": building,
                "kinds": ["elevator.fault", "elevator.ebike"],
                "start": now.isoformat(),
                "end": (now + timedelta(hours=2)).isoformat(),
                "reason": "电梯年检",
            },
        ).raise_for_status()
        while time.monotonic() < end:
            for t in http.get("/api/v1/tickets", params={"limit": 200}).json()["items"]:
                if t["id"] in plan or t["status"] != "dispatched" or not t["assignee_id"]:
                    continue
                p = pace.setdefault(t["assignee_id"], rng.choice((0.3, 0.5, 0.8, 1.6)))
                ack = time.monotonic() + rng.uniform(20, 160) * p
                arrive = ack + rng.uniform(40, 160) * p
                outcome = "confirmed" if rng.random() < 0.6 else "false_alarm"
                steps = [(ack, "ack", None), (arrive, "arrive", None)]
                if rng.random() < 0.7:
                    steps.append(
                        (arrive + rng.uniform(20, 60), "resolve", {"outcome": outcome, "note": "现场处置完毕"})
                    )
                plan[t["id"]] = steps
            for tid, steps in plan.items():
                while steps and steps[0][0] <= time.monotonic():
                    _, action, body = steps.pop(0)
                    http.post(f"/api/v1/tickets/{tid}/{action}", json=body)
            time.sleep(1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/screen.png"))
    ap.add_argument("--households", type=int, default=600)
    ap.add_argument("--warmup", type=float, default=240.0, help="seconds of demo before the picture")
    ap.add_argument("--incident-every", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    with running_demo(
        args.households,
        args.incident_every,
        int(args.warmup + 180),
        prefix="whistle-screenshot-",
        keep_env="WHISTLE_SCREEN_",  # how the screen looks (e.g. WHISTLE_SCREEN_TILES_URL for a basemap)
    ) as link:
        base, token = link.split("/#token=")
        print(f"demo running at {base}/; playing the grid workers for {args.warmup:.0f} s", flush=True)
        play_workers(base, token, args.warmup, random.Random(args.seed))
        with chromium(1920, 1080) as d:
            d.get(link)
            until(lambda: d.execute_script(READY), timeout=90, interval=0.5, what="a drawn screen with a fire")
            time.sleep(2.0)  # let the charts finish their entry animation
            args.out.parent.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
