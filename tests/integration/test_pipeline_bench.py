"""bench/pipeline.py's code path on a handful of images, so the benchmark does not rot: worker
processes (crop, tracker, library, upload, relay), the bench reviewer approving through the
review use case, the numbers read back from the stream. Timing targets stay in the bench."""

from __future__ import annotations

import pytest

from bench.pipeline import CREATOR, image_set, run

pytestmark = pytest.mark.integration


async def test_the_pipeline_bench_takes_a_few_images_from_generated_to_uploaded(settings, tmp_path):
    images = image_set(4, distinct=2)
    result = await run(settings, images, crop_workers=1, log_dir=tmp_path / "logs", warmup=1, timeout=90)

    assert result["statuses"] == {"uploaded": 4} and result["uploaded"] == 4
    assert result["images_per_s"] > 0 and 0 < result["p50_s"] <= result["p99_s"] <= result["max_s"]
    stages = result["stages"]
    assert list(stages) == ["generated -> cropped", "cropped -> approved", "approved -> uploaded"]
    # The stages add up to the end-to-end latency of the slowest image at most.
    assert all(0 <= s["p50_s"] <= result["max_s"] for s in stages.values())
    assert not result["reviewer_errors"]
    cpu = result["cpu_ms_per_image"]
    assert cpu["crop1"] > 0 and cpu["upload"] > 0 and cpu["tracker"] > 0
    uploaded = list((settings.library_root / CREATOR / "5_uploaded" / "ppv").glob("*.png"))
    assert len(uploaded) == 4
