"""The page's reconnect delays are spread (full jitter), measured in the browser itself:
the page's own backoff.js, run many times as a pod's worth of tabs would after a drain."""

from __future__ import annotations

from playwright.async_api import Browser

from apex_gateway.web import STATIC

TABS = 2000
KS_CRITICAL_1E6 = 2.69  # sqrt(ln(2 / 1e-6) / 2), asymptotic two-sided


async def test_the_page_spreads_its_reconnects(browser: Browser) -> None:
    source = (STATIC / "js" / "backoff.js").read_text().replace("export ", "")
    page = await browser.new_page()
    try:
        draws = await page.evaluate(
            f"""() => {{ {source}
                const out = {{}};
                for (const attempt of [0, 1, 3, 8]) {{
                    out[attempt] = Array.from({{length: {TABS}}}, () => reconnectDelay(attempt));
                }}
                return {{draws: out, base: RECONNECT_BASE_MS, cap: RECONNECT_CAP_MS}};
            }}"""
        )
    finally:
        await page.close()
    base, cap = draws["base"], draws["cap"]
    for attempt, drawn in draws["draws"].items():
        ceiling = min(cap, base * 2 ** int(attempt))
        delays = sorted(drawn)
        assert delays[0] >= 0 and delays[-1] < ceiling
        # Kolmogorov-Smirnov distance to uniform(0, ceiling). The critical value is at the
        # 1e-6 level: four draws per run at 1 % failed about one clean CI run in 25, while
        # a clustered spread (the old 200 ms +-20 %) is still at a distance of about 0.9.
        distance = max(
            max((i + 1) / TABS - d / ceiling, d / ceiling - i / TABS) for i, d in enumerate(delays)
        )
        assert distance < KS_CRITICAL_1E6 / TABS**0.5 + 1 / ceiling, (attempt, distance)
    first = sorted(draws["draws"]["0"])
    crowd = max(sum(1 for d in first[i:] if d < start + 80) for i, start in enumerate(first))
    assert crowd <= 0.12 * TABS, "no crowd in one 80 ms (the old 200 ms +-20 % put them all there)"
