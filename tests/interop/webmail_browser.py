#!/usr/bin/python3
"""Drives Debian's chromium (headless, over chromedriver) through zolder's webmail:
log in, open a message, reply, move a message to Junk, look at the admin charts.
Saves a screenshot of each step into OUT_DIR.

Usage: webmail_browser.py BASE_URL USER PASSWORD OUT_DIR
Exit status 0 when every step saw what it expected; the failing step is printed.
"""
import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main():
    base, user, password, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="zolder-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"]:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(30)

    def shot(name):
        d.save_screenshot(os.path.join(out, f"{name}.png"))

    def expect(cond, what):
        if not cond:
            shot("failed")
            print(f"FAILED: {what}\nURL: {d.current_url}\n{d.page_source[:3000]}")
            d.quit()
            sys.exit(1)
        print(f"ok: {what}")

    try:
        # 1. The login form.
        d.get(base + "/")
        shot("01-login")
        d.find_element(By.NAME, "user").send_keys(user)
        d.find_element(By.NAME, "password").send_keys(password)
        d.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        expect(d.current_url.endswith("/mail/INBOX"), "logged in, at the INBOX")
        expect("Etentje zaterdag" in d.page_source, "the INBOX lists the message")
        shot("02-inbox")

        # 2. Open the message (HTML, sanitised; its remote image not loaded).
        d.find_element(By.LINK_TEXT, "Etentje zaterdag").click()
        expect("Zullen we zaterdag" in d.page_source, "the message page shows the text")
        expect("remote image(s) not loaded" in d.page_source, "the remote image waits for a click")
        expect(len(d.find_elements(By.TAG_NAME, "script")) == 0, "no script on the page")
        shot("03-message")

        # 3. Reply.
        d.find_element(By.LINK_TEXT, "Reply").click()
        expect(d.find_element(By.NAME, "subject").get_attribute("value") == "Re: Etentje zaterdag",
               "the reply form is filled in")
        body = d.find_element(By.NAME, "body")
        body.send_keys("Goed plan, tot zaterdag!")
        shot("04-reply")
        d.find_element(By.CSS_SELECTOR, "form[action='/send'] button[type='submit']").click()
        expect(d.current_url.endswith("/mail/Sent"), "sent, at the Sent folder")
        expect("Re: Etentje zaterdag" in d.page_source, "the copy is in Sent")
        shot("05-sent")

        # 4. Move the other message to Junk from its page.
        d.get(base + "/mail/INBOX")
        d.find_element(By.LINK_TEXT, "You have won a prize").click()
        d.find_element(By.CSS_SELECTOR, "button[value='junk']").click()
        expect(d.current_url.endswith("/mail/INBOX"), "back at the INBOX")
        expect("You have won a prize" not in d.page_source, "the spam left the INBOX")
        d.get(base + "/mail/Junk")
        expect("You have won a prize" in d.page_source, "the spam is in Junk")
        shot("06-junk")

        # 5. The admin page with its charts.
        d.get(base + "/admin")
        expect(len(d.find_elements(By.TAG_NAME, "svg")) >= 3, "the admin page has its charts")
        expect("Messages per day" in d.page_source, "the traffic chart is there")
        shot("07-admin")

        # The screenshot for the README: the INBOX.
        d.get(base + "/mail/INBOX")
        shot("webmail")
    finally:
        d.quit()
    print("browser test passed")


if __name__ == "__main__":
    main()
