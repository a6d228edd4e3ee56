"""``ingestion``: released parquets -> tidy tables (tag ``released``); raw video ads ->
probes, 1 fps frames, OCR, ASR, timelines (tag ``videos``).

Run one half with ``kedro run --pipelines ingestion --tags videos`` (or ``released``); point the
video half at your own ads with ``--params "ingestion.video_root=/my/ads"``.
"""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.ingestion import released_nodes, report, video_nodes


def create_pipeline(**kwargs) -> Pipeline:
    released = Pipeline(
        [
            Node(
                released_nodes.import_released,
                inputs=["released_sft_raw", "released_rl_raw", "params:ingestion.released"],
                outputs=[
                    "released_videos",
                    "released_timelines",
                    "released_qa",
                    "released_import_errors",
                    "released_import_metrics",
                ],
                name="import_released",
                tags=["released"],
            ),
        ]
    )
    videos = Pipeline(
        [
            Node(
                video_nodes.probe_videos,
                inputs=["raw_videos", "video_probes_previous", "params:ingestion"],
                outputs=["video_probes", "ingestion_probe_stats"],
                name="probe_videos",
            ),
            Node(
                video_nodes.decode_frames,
                inputs=["video_probes", "frames_existing", "decode_records_existing",
                        "params:ingestion"],
                outputs=["frames", "decode_records", "ingestion_decode_stats"],
                name="decode_frames",
            ),
            Node(
                video_nodes.ocr_frames,
                inputs=["video_probes", "frames", "decode_records", "ocr_records_existing",
                        "params:ingestion"],
                outputs=["ocr_records", "ingestion_ocr_stats"],
                name="ocr_frames",
            ),
            Node(
                video_nodes.transcribe_audio,
                inputs=["video_probes", "decode_records", "raw_videos", "asr_records_existing",
                        "params:ingestion"],
                outputs=["asr_records", "ingestion_asr_stats"],
                name="transcribe_audio",
            ),
            Node(
                video_nodes.build_timelines,
                inputs=["video_probes", "decode_records", "ocr_records", "asr_records",
                        "raw_videos", "timeline_texts_existing", "params:ingestion"],
                outputs=["video_timelines", "ingested_videos", "timeline_texts",
                         "ingestion_quarantine"],
                name="build_timelines",
            ),
            Node(
                report.ingestion_summary,
                inputs=["video_probes", "ingested_videos", "ingestion_quarantine",
                        "ingestion_probe_stats", "ingestion_decode_stats", "ingestion_ocr_stats",
                        "ingestion_asr_stats", "params:ingestion.video_root"],
                outputs=["ingestion_summary_md", "ingestion_metrics"],
                name="ingestion_summary",
            ),
        ],
        tags=["videos"],
    )
    return released + videos
