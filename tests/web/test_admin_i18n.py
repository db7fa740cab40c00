"""The operator's console in Simplified Chinese, and laid out for a phone.

Every console page renders for an admin whose session language is zh: its headings and the
console's navigation are Chinese, and no ISO date written by a leftover strftime shows in the text
(Chinese dates read 2026年11月28日). Every data table follows the `table.cards` convention, and row
actions name what they act on.
"""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from portal import apikeys
from portal.database import atomic
from tests.domain.test_refunds_approval import pay_by_hand
from tests.web.helpers import something_on_every_console_page

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "admin"
ISO_DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
CHINESE_DAY = re.compile(r"\d{4}年\d{1,2}月\d{1,2}日")


class _Page(HTMLParser):
    """The visible text of a page, its headings, its tables' conventions and its buttons' names."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.headings: list[str] = []
        self.tables: list[dict] = []
        self.buttons: list[str] = []
        self._heading = None
        self._td = None
        self._skip = 0  # inside <script>, <style>, <textarea>, <svg>: not page text

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style", "textarea", "svg"):
            self._skip += 1
        elif tag in ("h1", "h2"):
            self._heading = []
        elif tag == "table":
            self.tables.append({"class": attrs.get("class") or "", "caption": False, "unlabelled": []})
        elif tag == "caption" and self.tables:
            self.tables[-1]["caption"] = True
        elif tag == "td" and self.tables:
            self._td = ("data-label" in attrs, [])
        elif tag == "button" and attrs.get("aria-label"):
            self.buttons.append(attrs["aria-label"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "textarea", "svg"):
            self._skip -= 1
        elif tag in ("h1", "h2") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None
        elif tag == "td" and self._td is not None:
            labelled, text = self._td
            if not labelled and "".join(text).strip():
                self.tables[-1]["unlabelled"].append("".join(text).strip())
            self._td = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)
        if self._td is not None:
            self._td[1].append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture
def console(client, auth):
    """An admin reading the console in Chinese, with something on every page."""
    admin = auth.admin()
    with client.session_transaction() as session:
        session["lang"] = "zh"
    world = something_on_every_console_page()
    pay_by_hand(world["person"], 3_000_000, reference="wire-1")
    with atomic():
        apikeys.issue(world["person"], "laptop")
    return {"admin": admin, **world}


def pages(ids) -> dict[str, str]:
    """Each console page, with a heading it must show in Chinese."""
    return {
        "/admin/": "概览",
        "/admin/?days=7": "各模型的消费与毛利",
        "/admin/users": "用户",
        f"/admin/users/{ids['person'].id}": "最近的调用",
        "/admin/refunds": "退款申请",
        f"/admin/refunds/{ids['refund']}": "现在批准将退还的金额",
        "/admin/inbox": "收件箱",
        f"/admin/inbox/{ids['message']}": "通过邮件回复",
        "/admin/announcements": "公告",
        "/admin/models": "模型与价格",
        "/admin/models/new": "添加模型",
        "/admin/models/import": "导入价目表",
        f"/admin/models/{ids['model'].id}": "修改价格",
        "/admin/upstreams": "上游",
        "/admin/upstreams/new": "添加上游",
        f"/admin/upstreams/{ids['model'].upstream_id}": "测试连接",
        "/admin/signals": "从大量地址使用的密钥",
        "/admin/site": "维护",
        "/admin/site/incidents": "发布事件",
        f"/admin/site/incidents/{ids['incident']}": "解决",
        "/admin/legal": "服务条款、隐私政策与退款政策",
        "/admin/legal/terms": "发布新版本",
        "/admin/legal/terms/v1": "服务条款，版本 v1",
        "/admin/audit": "审计日志",
    }


def test_every_console_page_reads_in_chinese(client, console):
    for url, heading in pages(console).items():
        response = client.get(url)
        assert response.status_code == 200, url
        page = parse(response.get_data(as_text=True))
        assert heading in page.headings, (url, page.headings)
        text = " ".join(" ".join(page.text).split())
        assert "审计日志" in text and "概览" in text, url  # the console's navigation, lazily translated
        assert not ISO_DAY.search(text), (url, ISO_DAY.search(text).group(0), text[:2000])


def test_dates_and_money_follow_the_language(client, console):
    person = console["person"]
    text = " ".join(parse(client.get(f"/admin/users/{person.id}").get_data(as_text=True)).text)
    assert CHINESE_DAY.search(text)
    assert "US$1.234567" in text  # the call's exact cost, written the Chinese way
    # The account's limits and its status word are Chinese too.
    assert "每分钟请求数 默认" in " ".join(text.split()) and "正常" in text


def test_flash_messages_and_form_errors_are_chinese(client, console):
    person = console["person"]
    response = client.post(f"/admin/users/{person.id}/suspend", data={"reason": "spam"})
    assert response.status_code == 422
    assert "请勾选确认框" in response.get_data(as_text=True)
    response = client.post(f"/admin/models/{console['model'].id}/settings",
                           data={"upstream": "echo", "max_output_tokens": "many"})
    assert response.status_code == 422 and "请填写不小于 1 的整数。" in response.get_data(as_text=True)
    done = client.post("/admin/site/maintenance/off", data={"reason": "checking"})
    assert "维护模式本来就已关闭，未做更改。" in client.get(done.headers["Location"]).get_data(as_text=True)


def test_tables_are_cards_with_captions_and_labelled_cells(client, console):
    for url in pages(console):
        page = parse(client.get(url).get_data(as_text=True))
        for table in page.tables:
            assert "cards" in table["class"].split(), (url, table)
            assert table["caption"], (url, table)
            assert not table["unlabelled"], (url, table["unlabelled"])


def test_row_actions_name_their_object(client, console):
    page = parse(client.get(f"/admin/users/{console['person'].id}").get_data(as_text=True))
    assert "吊销 laptop" in page.buttons and "暂停 alice@example.com" in page.buttons


def test_no_strftime_left_outside_machine_values():
    """Dates on screen go through |day, |minute or |second; strftime only fills a datetime-local input."""
    for path in TEMPLATES.rglob("*.html"):
        for line in path.read_text().splitlines():
            if "strftime(" in line:
                assert "value=" in line and "%Y-%m-%dT%H:%M" in line, (path, line)
