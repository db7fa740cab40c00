"""The public pricing page shows every price a model has, and only the columns some model uses."""
import re
from pathlib import Path

from portal import catalog, pricefile
from portal.database import atomic
from portal.pricing import Price

DATA = Path(__file__).resolve().parents[1] / "data"


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_pricing_page_shows_every_class_tier_and_fee(client):
    with atomic():
        catalog.add_upstream("openai", "openai", "https://api.openai.com/v1")
        catalog.add_upstream("anthropic", "anthropic", "https://api.anthropic.com")
        pricefile.import_file(DATA / "published-prices.json")
    html = client.get("/pricing").get_data(as_text=True)
    headers = re.findall(r'<th scope="col"[^>]*>([^<]+)</th>', html)
    assert headers == ["Model", "Input", "Output", "Cache read", "Cache write 5 min", "Cache write 1 h", "Audio in",
                       "Audio out", "Price since"]  # no model prices reasoning apart
    page = text_of(html)
    assert "claude-sonnet $3.00 $15.00 $0.30 $3.75 $6.00 $6.00* $6.00*" in page
    assert "Above 200,000 input tokens, the whole call: input $6.00, output $22.50, cache read $0.60, " \
           "5-minute cache write $7.50, 1-hour cache write $12.00" in page
    assert "Per 1,000 uses: web search $10.00" in page
    assert "gpt-5 $1.25 $10.00 $0.125 same as input same as input $1.25* $1.25*" in page
    assert "Flex tier: input $0.625, output $5.00, cache read $0.0625 Priority tier: input $2.50, output $20.00, " \
           "cache read $0.25" in page
    assert "gpt-audio $2.50 $10.00 same as input same as input same as input $32.00 $64.00" in page
    assert "USD per million tokens. A long-context or tier price not listed is the model's own price. " \
           "* Not priced separately: charged at the model's highest input price." in page
    assert '<caption class="visually-hidden">' in html and '<th scope="row"><code>o3</code></th>' in html
    assert "$32.00" in text_of(client.get("/").get_data(as_text=True))  # the home page's table too


def test_pricing_page_stays_narrow_for_simple_prices(client):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("cheap", "echo", Price(input=75_000, output=300_000, reasoning=400_000))
        catalog.set_model("plain", "echo", Price(input=1_000_000, output=2_000_000))
    html = client.get("/pricing").get_data(as_text=True)
    assert re.findall(r'<th scope="col"[^>]*>([^<]+)</th>', html) == ["Model", "Input", "Output", "Reasoning",
                                                                      "Price since"]
    assert "cheap $0.075 $0.30 $0.40" in text_of(html) and "plain $1.00 $2.00 same as output" in text_of(html)
    assert "colspan" not in html and "Not priced separately" not in html and "tier price not listed" not in html
