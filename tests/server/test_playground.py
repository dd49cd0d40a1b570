"""The playground (``GET /playground``) and the frames endpoint it uses, against the live tiny-model server.

The browser test drives Debian's headless ``chromium`` through ``chromium-driver`` (Selenium): upload a video,
see both strategies' frames, ask and watch the answer stream in, and see the API's own words for a non-video.
Set ``PLAYGROUND_SCREENSHOT=path.png`` to keep a screenshot of the page after the answer (docs/playground.png).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-frame 112x140 mp4 at 8 fps of its own (seed 5): its frames are cached under keys no other test uses."""
    import numpy as np
    from media import encode_mp4

    from model_plugin.reference.demo import synthetic_video

    frames = synthetic_video(frames=24, height=112, width=140, seed=5).permute(0, 2, 3, 1).numpy()
    return encode_mp4(np.ascontiguousarray(frames), tmp_path_factory.mktemp("playground") / "room.mp4", fps=8)


def _upload(live, path: Path) -> dict:
    with path.open("rb") as handle:
        response = httpx.post(
            f"{live.base}/v1/files", headers=live.headers, files={"file": (path.name, handle)}, timeout=60
        )
    assert response.status_code == 200, response.text
    return response.json()


def _frames(live, file_id: str, **sampling) -> httpx.Response:
    body = {"video_sampling": sampling}
    return httpx.post(f"{live.base}/v1/files/{file_id}/frames", headers=live.headers, json=body, timeout=300)


def _cache_hits(live) -> float:
    text = httpx.get(f"{live.base}/metrics", timeout=10).text
    match = re.search(r'^spatial_mllm_sampling_cache_total\{result="hit"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_frames_endpoint_shows_what_chat_samples_and_shares_its_cache(live, clip: Path) -> None:
    uploaded = _upload(live, clip)
    response = _frames(live, uploaded["id"], strategy="uniform", num_frames=4)
    assert response.status_code == 200, response.text
    result = response.json()
    fps = uploaded["video"]["fps"]
    indices = [frame["index"] for frame in result["frames"]]
    assert result["strategy"] == "uniform" and len(indices) == 4 and indices == sorted(indices)
    assert result["video_num_frames"] == uploaded["video"]["num_frames"] and result["candidates"] == []
    for frame in result["frames"]:
        assert frame["timestamp_s"] == pytest.approx(frame["index"] / fps, abs=1e-3)
        header, _, payload = frame["thumbnail"].partition(",")
        assert header == "data:image/jpeg;base64"
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert image.format == "JPEG" and image.height == 96

    # a question with the same spec reuses the prepared frames
    hits = _cache_hits(live)
    chat = httpx.post(
        f"{live.base}/v1/chat/completions",
        headers=live.headers,
        json={
            "model": "spatial-mllm-tiny",
            "max_tokens": 2,
            "video_sampling": {"strategy": "uniform", "num_frames": 4},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": uploaded["id"]}},
                        {"type": "text", "text": "What is here?"},
                    ],
                }
            ],
        },
        timeout=300,
    )
    assert chat.status_code == 200, chat.text
    assert _cache_hits(live) == hits + 1

    space_aware = _frames(live, uploaded["id"], strategy="space_aware", num_frames=4)
    assert space_aware.status_code == 200, space_aware.text
    chosen = [frame["index"] for frame in space_aware.json()["frames"]]
    candidates = space_aware.json()["candidates"]
    assert len(candidates) == min(16, uploaded["video"]["num_frames"])  # --space-aware-candidates 16
    assert len(chosen) == 4 and set(chosen) <= set(candidates)


def test_frames_endpoint_errors_name_the_field(live, clip: Path) -> None:
    uploaded = _upload(live, clip)
    too_many = _frames(live, uploaded["id"], num_frames=17)  # --max-num-frames 16
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "video_sampling.num_frames"
    unknown = _frames(live, "file-" + "0" * 32)
    assert unknown.status_code == 404
    no_key = httpx.post(f"{live.base}/v1/files/{uploaded['id']}/frames", json={}, timeout=10)
    assert no_key.status_code == 401


def test_playground_page_opens_without_a_key_and_its_api_calls_need_one(live) -> None:
    for path in ("/playground", "/playground?key=wrong", "/playground/app.js", "/playground/style.css"):
        assert httpx.get(f"{live.base}{path}", timeout=10).status_code == 200, path
    page = httpx.get(f"{live.base}/playground", timeout=10)
    assert page.headers["content-type"].startswith("text/html") and 'id="key"' in page.text
    config = httpx.get(f"{live.base}/playground/config.json", timeout=10).json()
    assert config == {"toy_model": True, "max_tokens": 16}  # the tiny random-weight model: a few tokens of noise
    assert httpx.get(f"{live.base}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{live.base}/v1/models", headers=live.headers, timeout=10).status_code == 200


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("the browser test needs Debian's browser: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1400"):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


def test_playground_in_a_real_browser(live, browser, clip: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 300)
    # a server with keys: the page opens without one, says the model is a toy, and asks for the key
    browser.get(f"{live.base}/playground")
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), "API key"))
    assert browser.find_element(By.ID, "toy-note").is_displayed()
    assert "gibberish" in browser.find_element(By.ID, "toy-note").text
    assert browser.find_element(By.ID, "max-tokens").get_attribute("value") == "16"
    browser.find_element(By.ID, "key").send_keys(live.key + "\t")  # typed on the page: its API calls carry it
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), "spatial-mllm-tiny"))
    # or given once in the address: it leaves the address bar (kept for the tab only)
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{live.base}/playground?key={live.key}")
    assert "key=" not in browser.current_url
    wait.until(ready.text_to_be_present_in_element((By.ID, "model"), "spatial-mllm-tiny"))
    browser.find_element(By.ID, "num-frames").clear()
    browser.find_element(By.ID, "num-frames").send_keys("4")

    # upload: the video's facts, then both strategies' frames with alt text, candidates on the timeline
    browser.find_element(By.ID, "file").send_keys(str(clip))
    wait.until(ready.visibility_of_element_located((By.ID, "facts")))
    facts = browser.find_element(By.ID, "facts").text
    assert "24" in facts and "140 × 112" in facts
    strip = '.strip[data-strategy="{}"][aria-busy="false"]'
    for strategy in ("uniform", "space_aware"):
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, strip.format(strategy))))
        images = browser.find_elements(By.CSS_SELECTOR, f'.strip[data-strategy="{strategy}"] img')
        assert len(images) == 4, browser.find_element(By.CSS_SELECTOR, strip.format(strategy)).text
        assert all(image.get_attribute("alt").startswith("Frame ") for image in images)
        assert all(browser.execute_script("return arguments[0].naturalWidth", image) > 0 for image in images)
    candidates = browser.find_elements(By.CSS_SELECTOR, '.strip[data-strategy="space_aware"] .mark.candidate')
    assert len(candidates) == 16

    # ask: the answer streams in with timings and usage; a follow-up reuses the upload
    browser.find_element(By.ID, "max-tokens").clear()
    browser.find_element(By.ID, "max-tokens").send_keys("24")
    uploads_before = len(httpx.get(f"{live.base}/v1/files", headers=live.headers, timeout=10).json()["data"])
    for turn in (1, 2):
        browser.find_element(By.ID, "ask-button").click()
        done = f".turn:nth-of-type({turn}) .reply[data-state='done']"
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, done)))
        stats = browser.find_element(By.ID, "stats").text
        assert stats.startswith("TTFT ") and "completion tokens" in stats, stats
        assert browser.find_element(By.ID, "error").is_displayed() is False
    assert len(httpx.get(f"{live.base}/v1/files", headers=live.headers, timeout=10).json()["data"]) == uploads_before
    if os.environ.get("PLAYGROUND_SCREENSHOT"):
        height = browser.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
        browser.set_window_size(1000, height + 140)  # the whole page (the window's frame takes some height)
        browser.save_screenshot(os.environ["PLAYGROUND_SCREENSHOT"])

    # a file that is not a video: the page shows the API's own words
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    with not_video.open("rb") as handle:
        refused = httpx.post(f"{live.base}/v1/files", headers=live.headers, files={"file": handle}, timeout=30)
    assert refused.status_code >= 400
    browser.find_element(By.ID, "file").send_keys(str(not_video))
    wait.until(ready.visibility_of_element_located((By.ID, "error")))
    shown = browser.find_element(By.ID, "error").text
    assert shown.startswith(str(refused.status_code)) and refused.json()["error"]["message"] in shown
