"""SynthGait: procedurally generated walking people with identities, views, clothing, motion states,
distance, RGB and true resize ratios (see docs/synthgait.md)."""

from gader.data.synth.generator import (
    CASIA_CONDITIONS,
    PRESETS,
    VIEWS,
    SequenceSpec,
    plan_dataset,
    render_sequence,
)

__all__ = ["CASIA_CONDITIONS", "PRESETS", "VIEWS", "SequenceSpec", "plan_dataset", "render_sequence"]
