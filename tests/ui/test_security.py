"""/ui follows the API keys: a login form, an HttpOnly session cookie that is not the key, admin
actions for admin keys only; every form needs its CSRF token; the API itself needs no cookie."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.jobs_support import small

from .conftest import ADMIN_KEY, USER_KEY

TOKEN = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')


def sign_in(page, daemon, key: str) -> None:
    page.goto(f"{daemon.url}/ui/")
    page.wait_for_url(re.compile(r".*/ui/login\?next=.*"))
    page.fill("#key", key)
    page.click("form[action='/ui/login'] button[type=submit]")
    page.wait_for_selector("#job-rows")


def test_login_sets_an_http_only_session_and_logout_ends_it(page, keyed_ui_daemon):
    url = keyed_ui_daemon.url
    page.goto(f"{url}/ui/models")
    assert "/ui/login" in page.url
    page.fill("#key", "not-a-key")
    page.click("form[action='/ui/login'] button[type=submit]")
    page.wait_for_selector(".error:text('not valid')")
    page.fill("#key", USER_KEY)
    page.click("form[action='/ui/login'] button[type=submit]")
    page.wait_for_url(f"{url}/ui/models")  # back where the person was going
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["loom_session"]
    assert session["httpOnly"] and session["path"] == "/ui" and USER_KEY not in session["value"]
    assert page.evaluate("document.cookie") == ""  # no script can read the session
    # A user key reads but does not load or switch models.
    assert page.locator("button:text('Load')").count() == 0
    assert page.locator("#switch-form").count() == 0
    page.click("header form.logout button")
    page.wait_for_url(re.compile(r".*/ui/login$"))
    page.goto(f"{url}/ui/")
    assert "/ui/login" in page.url


def test_an_admin_key_may_load_models(page, keyed_ui_daemon):
    sign_in(page, keyed_ui_daemon, ADMIN_KEY)
    page.goto(f"{keyed_ui_daemon.url}/ui/models")
    page.locator("#model-bs-llm button:text('Load')").click()
    page.wait_for_selector("#model-bs-llm[data-loaded='yes']")


def client_session(daemon, key: str) -> tuple[httpx.Client, str]:
    """An HTTP client signed in through the form, and its page's CSRF token."""
    c = httpx.Client(base_url=daemon.url, timeout=30)
    token = TOKEN.search(c.get("/ui/login").text).group(1)
    r = c.post("/ui/login", data={"key": key, "next": "/ui/", "_csrf_token": token})
    assert r.status_code == 303 and "loom_session" in c.cookies
    return c, TOKEN.search(c.get("/ui/pipelines/beam_search").text).group(1)


def job_count(daemon) -> int:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return len(httpx.get(f"{daemon.url}/v1/jobs", headers=headers).json()["data"])


def test_forms_without_their_csrf_token_are_refused(keyed_ui_daemon):
    c, token = client_session(keyed_ui_daemon, USER_KEY)
    form = {"prompt": "an apple", "beam_width": "2", "keep_top": "1", "iterations": "1"}
    before = job_count(keyed_ui_daemon)
    try:
        missing = c.post("/ui/pipelines/beam_search", data=form)
        assert missing.status_code == 403 and "CSRF" in missing.text
        # A token from another session (another CSRF cookie) does not pass either.
        other, foreign = client_session(keyed_ui_daemon, USER_KEY)
        other.close()
        assert c.post("/ui/pipelines/beam_search", data={**form, "_csrf_token": foreign}).status_code == 403
        assert job_count(keyed_ui_daemon) == before
        ok = c.post("/ui/pipelines/beam_search", data={**form, "_csrf_token": token})
        assert ok.status_code == 303 and ok.headers["location"].startswith("/ui/jobs/")
        assert job_count(keyed_ui_daemon) == before + 1
        # htmx sends the token as a header instead.
        assert c.post("/ui/jobs/nope/cancel", headers={"x-csrftoken": token}).status_code == 404
        # A user session may not take admin actions.
        assert c.post("/ui/models/bs-llm/unload", data={"_csrf_token": token}).status_code == 403
    finally:
        c.close()
    # Logging in is a form too.
    fresh = httpx.post(f"{keyed_ui_daemon.url}/ui/login", data={"key": USER_KEY})
    assert fresh.status_code == 403 and "loom_session" not in fresh.cookies


def test_pages_need_a_session_and_the_api_needs_no_cookie(keyed_ui_daemon):
    url = keyed_ui_daemon.url
    r = httpx.get(f"{url}/ui/jobs/live")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert httpx.get(f"{url}/ui/evaluations/export").status_code == 303
    forged = httpx.get(f"{url}/ui/", cookies={"loom_session": "admin.9999999999.abc.def"})
    assert forged.status_code == 303
    # A key in the header works for /ui too (scripts), and the API stays cookie- and CSRF-free.
    assert httpx.get(f"{url}/ui/", headers={"Authorization": f"Bearer {USER_KEY}"}).status_code == 200
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    r = httpx.post(
        f"{url}/v1/pipelines/beam_search", json=small(iterations=1, beam_width=1, keep_top=1), headers=headers
    )
    assert r.status_code == 202
    assert httpx.get(f"{url}/v1/evaluations").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/v1/models"])
def test_login_never_sends_a_person_off_the_ui(keyed_ui_daemon, target):
    with httpx.Client(base_url=keyed_ui_daemon.url) as c:
        token = TOKEN.search(c.get("/ui/login").text).group(1)
        r = c.post("/ui/login", data={"key": USER_KEY, "next": target, "_csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
