from __future__ import annotations

from whistle.metrics import Sample, render


def test_prometheus_text_format() -> None:
    text = render(
        [
            Sample("whistle_dead_letters_total", "input refused, by reason", "counter", 3, {"reason": "not_json"}),
            Sample("whistle_up", "1 when up", "gauge", 1),
            Sample("whistle_dead_letters_total", "input refused, by reason", "counter", 0, {"reason": 'a"b\\c'}),
            Sample("whistle_ratio", "a ratio", "gauge", 0.25),
        ]
    )
    assert text == (
        "# HELP whistle_dead_letters_total input refused, by reason\n"
        "# TYPE whistle_dead_letters_total counter\n"
        'whistle_dead_letters_total{reason="not_json"} 3\n'
        'whistle_dead_letters_total{reason="a\\"b\\\\c"} 0\n'
        "# HELP whistle_up 1 when up\n"
        "# TYPE whistle_up gauge\n"
        "whistle_up 1\n"
        "# HELP whistle_ratio a ratio\n"
        "# TYPE whistle_ratio gauge\n"
        "whistle_ratio 0.25\n"
    )
