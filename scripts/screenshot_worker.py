"""Screenshots of the grid worker's page on a 360x640 phone during `whistle demo`, for the README.

Starts `whistle demo` on a fresh state directory and a free port, reads the printed link (with the admin token),
lets the street run until one grid worker has several open tickets, answers one of them as that worker would
(acknowledged) so the list shows more than one status, issues the worker a token over the API, signs in on
`/m/` in Debian's headless Chromium (Selenium, tests/browser.py) with the phone emulated, and saves the list
(`docs/worker.png`) and the most urgent ticket (`docs/worker-ticket.png`).

    make screenshot            # this and scripts/screenshot.py
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from selenium.webdriver.common.by import By

from tests.browser import chromium, until
from tests.demo_process import running_demo

OPEN = ("dispatched", "acknowledged", "on_site")
LISTED = "return document.body.dataset.state === 'list' && document.querySelectorAll('#tickets .ticket').length"
DETAIL = "return document.body.dataset.state === 'detail' && document.querySelectorAll('#d-evidence li').length"


def busiest_worker(http: httpx.Client, want: int, seconds: float) -> tuple[str, list[dict[str, object]]]:
    """The grid worker with the most kinds of open tickets (then the most), once one has `want` tickets of at
    least two kinds (or at the deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        items = http.get("/api/v1/tickets", params={"limit": 500}).json()["items"]
        open_ = [t for t in items if t["status"] in OPEN and t["assignee_id"]]
        count = Counter(t["assignee_id"] for t in open_)
        kinds = {w: {t["kind"] for t in open_ if t["assignee_id"] == w} for w in count}
        if count:
            worker = max(count, key=lambda w: (len(kinds[w]), count[w]))
            if (count[worker] >= want and len(kinds[worker]) >= 2) or time.monotonic() > deadline:
                return worker, [t for t in open_ if t["assignee_id"] == worker]
        elif time.monotonic() > deadline:
            raise SystemExit("no ticket was dispatched to a worker during the demo")
        time.sleep(2.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/worker.png"))
    ap.add_argument("--ticket-out", type=Path, default=Path("docs/worker-ticket.png"))
    ap.add_argument("--households", type=int, default=300)
    ap.add_argument("--incident-every", type=float, default=5.0)
    ap.add_argument("--tickets", type=int, default=3, help="open tickets the worker should have")
    ap.add_argument("--wait", type=float, default=420.0, help="at most this long for them")
    args = ap.parse_args()

    with running_demo(
        args.households, args.incident_every, int(args.wait + 240), prefix="whistle-worker-shot-"
    ) as link:
        base, admin = link.split("/#token=")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=10) as http:
            worker, tickets = busiest_worker(http, args.tickets, args.wait)
            token = http.post(f"/api/v1/users/{worker}/tokens", json={"label": "screenshot"}).json()["token"]
            oldest = min(tickets, key=lambda t: str(t["created_at"]))
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as me:
                me.post(f"/api/v1/tickets/{oldest['id']}/ack")  # one answered, so the list shows both states
        print(f"{worker}: {len(tickets)} open tickets: {sorted(str(t['kind']) for t in tickets)}", flush=True)
        with chromium(360, 640, mobile=True) as d:
            d.get(f"{base}/m/")
            until(lambda: d.execute_script("return document.body.dataset.state === 'signin'"), timeout=30)
            d.find_element(By.CSS_SELECTOR, '.tab[data-tab="token"]').click()
            d.find_element(By.ID, "si-token").send_keys(token)
            d.find_element(By.ID, "si-submit").click()
            until(lambda: d.execute_script(LISTED), timeout=30, what="the worker's list")
            until(lambda: d.execute_script("return document.getElementById('conn').textContent === '实时'"), timeout=20)
            time.sleep(1.0)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(args.out))
            d.find_element(By.CSS_SELECTOR, "#tickets .ticket").click()
            until(lambda: d.execute_script(DETAIL), timeout=20, what="the ticket")
            time.sleep(0.5)
            d.save_screenshot(str(args.ticket_out))
        print(f"wrote {args.out} and {args.ticket_out}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
