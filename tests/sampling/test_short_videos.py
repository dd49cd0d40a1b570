"""The short-video rule of both strategies, in one wording (sampling/short_videos.py)."""

from __future__ import annotations

import pytest

from sampling.errors import VideoTooShortError
from sampling.short_videos import space_aware_note
from sampling.uniform import UniformSpec, frame_count


@pytest.mark.parametrize(("frames", "most"), [(5, 4), (1, 0)])
def test_uniform_refuses_a_short_video_naming_the_count_it_takes(frames: int, most: int) -> None:
    with pytest.raises(VideoTooShortError) as refused:
        frame_count(frames, 4.0, UniformSpec(nframes=8))
    message = str(refused.value)
    assert message.startswith(f"The video has {frames} frame(s) in the sampled range but 8 are needed")
    assert "rather than repeat frames" in message
    assert (f"ask for at most {most} frames" in message) == bool(most)


def test_space_aware_on_a_short_video_says_what_it_did_in_the_same_words() -> None:
    note = space_aware_note(video_frames=5, candidates=5, asked=8, chosen=5)
    assert note is not None and note.startswith("The video has 5 frame(s) but 8 were asked")
    assert "rather than repeat" in note and "chose 5" in note and "at most 5 frames" in note


def test_space_aware_stopping_early_on_a_long_video_says_why() -> None:
    note = space_aware_note(video_frames=300, candidates=128, asked=16, chosen=11)
    assert note is not None and note.startswith("Space-aware sampling chose 11 of the 16 frames asked")


def test_no_note_when_every_frame_asked_came_back() -> None:
    assert space_aware_note(video_frames=300, candidates=128, asked=16, chosen=16) is None
    assert space_aware_note(video_frames=2, candidates=2, asked=2, chosen=2) is None
